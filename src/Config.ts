/**
 * The shape of the configuration file, as a Schema: decoding it reports every problem with its
 * key path, and yields the typed `DaemonConfig` the rest of the daemon reads through `AppConfig`.
 * Secrets decode to `Redacted` so that they never reach a log line or a JSON dump.
 */
import * as Context from "effect/Context"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { parseCidr } from "./net/ClientAddress.js"

const Port = Schema.Int.pipe(Schema.between(0, 65535, { message: () => "a port number between 0 and 65535" }))
const PositiveInt = Schema.Int.pipe(Schema.positive({ message: () => "a positive integer" }))
const NonNegativeInt = Schema.Int.pipe(Schema.nonNegative({ message: () => "an integer >= 0" }))
const NonEmpty = Schema.String.pipe(Schema.minLength(1, { message: () => "a non-empty string" }))
const Secret = Schema.Redacted(NonEmpty)

const opt = <A, I, R>(schema: Schema.Schema<A, I, R>, value: () => NoInfer<A>) =>
  Schema.optionalWith(schema, { default: value, exact: true })

const strict = { onExcessProperty: "error" } as const

export const TlsConfig = Schema.Struct({
  enabled: opt(Schema.Boolean, () => false).annotations({ description: "Serve `wss://` and `https://` directly." }),
  cert_file: Schema.optionalWith(NonEmpty, { exact: true }).annotations({
    description: "PEM certificate chain of the server: required when `enabled`, checked at start, re-read on SIGHUP."
  }),
  key_file: Schema.optionalWith(NonEmpty, { exact: true }).annotations({
    description: "PEM private key of the server, unencrypted, matching the certificate: required when `enabled`, " + "re-read on SIGHUP."
  }),
  ca_file: Schema.optionalWith(NonEmpty, { exact: true }).annotations({
    description: "PEM CA bundle: when set, every client must present a certificate it signed (mutual TLS)."
  }),
  min_version: opt(Schema.Literal("TLSv1.2", "TLSv1.3"), () => "TLSv1.2" as const).annotations({
    description: "Lowest TLS version accepted."
  })
}).annotations({ parseOptions: strict })

export const ServerConfig = Schema.Struct({
  host: opt(NonEmpty, () => "127.0.0.1").annotations({ description: "Listen address (`0.0.0.0` for every interface)." }),
  port: opt(Port, () => 50051).annotations({
    description:
      "Port of the WebSocket and of the HTTP endpoints, which share it; `0` picks a free port (printed in " +
      'the "listening on" log line).'
  }),
  max_payload: opt(PositiveInt, () => 1024 * 1024).annotations({
    description:
      "Largest frame answered normally, in bytes. A larger frame gets a 400 answer (`id: null`) and the " +
      "connection stays open; a frame over 4 × `max_payload` closes the connection with code 1009."
  }),
  max_in_flight: opt(PositiveInt, () => 64).annotations({
    description: "Requests of one connection executing at once; further frames wait (the socket is paused)."
  }),
  max_connections: opt(PositiveInt, () => 10_000).annotations({
    description: "Open WebSocket connections in total; more are refused with HTTP 503."
  }),
  max_connections_per_address: opt(PositiveInt, () => 1_000).annotations({
    description: "Open WebSocket connections per remote address; more are refused with HTTP 429."
  }),
  idle_timeout: opt(NonNegativeInt, () => 600).annotations({
    description:
      "Seconds without a frame from the client before the connection is closed (code 1000); `0`: never. " +
      "Checked every `heartbeat_interval` (every min(30 s, `idle_timeout`) when heartbeats are off)."
  }),
  heartbeat_interval: opt(NonNegativeInt, () => 30).annotations({
    description: "Seconds between pings; a peer that has not answered the previous ping is dropped; `0`: off."
  }),
  max_buffered_bytes: opt(PositiveInt, () => 16 * 1024 * 1024).annotations({
    description: "Bytes of answers a slow reader may leave unsent before its connection is dropped."
  }),
  shutdown_grace: opt(NonNegativeInt, () => 10).annotations({
    description:
      "Seconds in-flight requests get to finish on SIGTERM/SIGINT: the daemon stops accepting, waits at " +
      "most this long, then closes the sockets with code 1001 ([Shutdown](operations.md#shutdown))."
  }),
  tls: opt(TlsConfig, () => TlsConfig.make({})).annotations({
    description: "TLS and mutual TLS ([TLS](operations.md#tls-and-mutual-tls))."
  }),
  trusted_proxies: opt(
    Schema.Array(
      NonEmpty.pipe(
        Schema.filter((s) => parseCidr(s) !== undefined, {
          message: () => "a CIDR block (e.g. 10.0.0.0/8, 2001:db8::/32) or an IP address"
        })
      )
    ),
    () => []
  ).annotations({
    description:
      "CIDR blocks of the proxies and load balancers in front of the daemon. Only a peer inside one may name the client: its " +
      "X-Forwarded-For (read from the right, skipping trusted hops) or, with `proxy_protocol`, its PROXY header gives the " +
      "address that audit records, failed-auth throttling and `max_connections_per_address` use. Default: none (the peer's " +
      "own address; forwarding headers ignored) ([Trusted proxies](security.md#trusted-proxies))."
  }),
  proxy_protocol: opt(Schema.Boolean, () => false).annotations({
    description:
      "Read a PROXY protocol header (v1 or v2) at the start of every connection from a trusted proxy " +
      "(`server.trusted_proxies`), which must then send one; a connection from any other peer that starts with one is " +
      "refused. Enable it only together with the proxy's own setting."
  })
}).annotations({ parseOptions: strict })

export const Adapter = Schema.Literal("sqlite", "postgresql", "mysql")
export type Adapter = typeof Adapter.Type

export const ConnectionConfig = Schema.Struct({
  filename: Schema.optionalWith(NonEmpty, { exact: true }).annotations({
    description: "SQLite: the database file, **required** for sqlite (its folder is created; `:memory:` for a " + "throw-away database)."
  }),
  busy_timeout: opt(NonNegativeInt, () => 5000).annotations({
    description: "SQLite: how long a writer waits for the lock, in milliseconds."
  }),
  readers: opt(PositiveInt, () => 2).annotations({
    description:
      "SQLite: executor processes that run reads outside transactions (each its own connection, WAL), beside the one writer " +
      "process that runs writes and transactions. No statement runs on the thread that serves connections, and " +
      "`performance.query_timeout` ends a statement by killing its process. Ignored for `:memory:` (one process) " +
      "([SQLite](operations.md#sqlite-executor-processes-one-writer-query_timeout))."
  }),
  host: Schema.optionalWith(NonEmpty, { exact: true }).annotations({
    description: "PostgreSQL/MySQL: the server, **required** for postgresql and mysql."
  }),
  port: Schema.optionalWith(Port, { exact: true }).annotations({
    description: "PostgreSQL/MySQL: the server's port. Default: the driver's (5432 / 3306)."
  }),
  database: Schema.optionalWith(NonEmpty, { exact: true }).annotations({
    description: "PostgreSQL/MySQL: the database, **required** for postgresql and mysql."
  }),
  user: Schema.optionalWith(NonEmpty, { exact: true }).annotations({
    description: "PostgreSQL/MySQL: the user, **required** for postgresql and mysql."
  }),
  password: Schema.optionalWith(Secret, { exact: true }).annotations({
    description: 'The password: write `"${DBAL_DB_PASSWORD}"`, not the password itself.'
  }),
  password_file: Schema.optionalWith(NonEmpty, { exact: true }).annotations({
    description:
      "A file holding the database password (a trailing newline is ignored; wins over `password`), e.g. a mounted Kubernetes Secret. Read again for every new connection, so a rotated password needs no restart ([The database password](operations.md#the-database-password)). A relative path is resolved against $CREDENTIALS_DIRECTORY when that is set (systemd LoadCredential/LoadCredentialEncrypted), else against the configuration file's folder."
  }),
  ssl_mode: opt(Schema.Literal("disable", "require", "verify-full"), () => "disable" as const).annotations({
    description: "`require`: encrypted, certificate not verified; `verify-full`: encrypted, certificate verified."
  })
}).annotations({ parseOptions: strict })

export const DatabaseConfig = Schema.Struct({
  adapter: opt(Adapter, () => "sqlite" as const).annotations({
    description: "The database server: `mysql` serves MySQL 8 and MariaDB ([Database " + "adapters](entities.md#database-adapters))."
  }),
  connection: opt(ConnectionConfig, () => ConnectionConfig.make({})).annotations({
    description: "How to reach the database."
  }),
  pool_size: Schema.optionalWith(PositiveInt, { exact: true }).annotations({
    description:
      "Connections to PostgreSQL/MySQL per daemon process (SQLite uses one connection). Default: " + "`performance.connection_pool_size`."
  }),
  timeout: opt(PositiveInt, () => 5000).annotations({
    description:
      "Connect timeout in milliseconds (PostgreSQL/MySQL): bounds each connection attempt and each wait for " +
      "a free pool connection, never longer than `performance.query_timeout`; an unreachable database " +
      "answers 503 after it."
  }),
  auto_migrate: opt(Schema.Boolean, () => false).annotations({
    description:
      "At start, apply the additive steps of `dbal-daemon migrate` (new tables, columns, indexes, foreign keys, wider types); destructive ones are logged, not applied ([Migrations](entities.md#migrations)). false: create and alter nothing."
  })
}).annotations({ parseOptions: strict })

export const ServiceToken = Schema.Struct({
  name: Schema.propertySignature(
    NonEmpty.pipe(Schema.pattern(/^[A-Za-z0-9_.-]{1,64}$/, { message: () => "a name of letters, digits, _ . - (at most 64)" }))
  ).annotations({
    description: "The token's name: letters, digits, `_ . -` (at most 64), unique among the service tokens."
  }),
  token: Schema.propertySignature(
    Schema.Redacted(Schema.String.pipe(Schema.minLength(16, { message: () => "a token of at least 16 characters" })))
  ).annotations({
    description: 'The token itself, at least 16 characters: take it from the environment (`"${DBAL_SERVICE_TOKEN}"`).'
  }),
  token_file: Schema.optionalWith(NonEmpty, { exact: true }).annotations({
    description:
      "A file holding the token instead of `token` (a trailing newline is ignored). A relative path is resolved against $CREDENTIALS_DIRECTORY when that is set (systemd LoadCredential/LoadCredentialEncrypted), else against the configuration file's folder."
  })
}).annotations({ parseOptions: strict })

export const JwtAlgorithm = Schema.Literal("HS256", "HS384", "HS512", "RS256", "ES256", "EdDSA")

export const JwtConfig = Schema.Struct({
  enabled: opt(Schema.Boolean, () => false).annotations({ description: "Accept JWTs ([JWTs](security.md#jwts))." }),
  algorithms: opt(Schema.Array(JwtAlgorithm), () => ["HS256"] as const).annotations({
    description: "Accepted signature algorithms; HS* and public-key algorithms cannot be mixed."
  }),
  secret: Schema.optionalWith(
    Schema.Redacted(Schema.String.pipe(Schema.minLength(32, { message: () => "a secret of at least 32 characters" }))),
    { exact: true }
  ).annotations({ description: "HS*: the shared secret, at least 32 characters (required for HS*, unless `secret_file`)." }),
  secret_file: Schema.optionalWith(NonEmpty, { exact: true }).annotations({
    description:
      "HS*: a file holding the shared secret instead of `secret` (a trailing newline is ignored). A relative path is resolved against $CREDENTIALS_DIRECTORY when that is set, else against the configuration file's folder."
  }),
  public_key_file: Schema.optionalWith(NonEmpty, { exact: true }).annotations({
    description: "RS256/ES256/EdDSA: a PEM public key (SPKI)…"
  }),
  jwks_file: Schema.optionalWith(NonEmpty, { exact: true }).annotations({
    description: '…or a JSON Web Key Set file (`{"keys": [...]}`), which wins over `public_key_file`.'
  }),
  jwks_url: Schema.optionalWith(NonEmpty.pipe(Schema.pattern(/^https?:\/\/\S+$/, { message: () => "an http(s) URL" })), {
    exact: true
  }).annotations({
    description:
      "…or the URL of a JSON Web Key Set (an identity provider's `jwks_uri`), which wins over both: fetched when first " +
      "needed, kept `jwks_cache_max_age` seconds, and fetched again at once (at most once per `jwks_cooldown` seconds) when " +
      "a token names a key it does not hold, so that the provider's key rotations need no restart. While it cannot be " +
      "fetched, JWTs get 503 ([Rotating credentials](operations.md#rotating-credentials))."
  }),
  jwks_cache_max_age: opt(PositiveInt, () => 600).annotations({
    description: "Seconds the key set of `jwks_url` is used before it is fetched again."
  }),
  jwks_cooldown: opt(NonNegativeInt, () => 30).annotations({
    description: "Seconds at least between two fetches of `jwks_url` that a token with an unknown key (`kid`) causes."
  }),
  issuer: Schema.optionalWith(NonEmpty, { exact: true }).annotations({
    description: "When set, the `iss` every token must carry."
  }),
  audience: Schema.optionalWith(NonEmpty, { exact: true }).annotations({
    description: "When set, the `aud` every token must carry."
  }),
  role_claim: opt(NonEmpty, () => "role").annotations({
    description: "The claim that carries the user's role (`user`, `admin`, `god`, `supergod`)."
  }),
  clock_tolerance: opt(NonNegativeInt, () => 5).annotations({
    description: "Seconds of clock skew accepted on `exp` and `nbf`."
  })
}).annotations({ parseOptions: strict })

export const FailedAuthConfig = Schema.Struct({
  burst: opt(PositiveInt, () => 10).annotations({
    description: "Failed authentications a remote address may make at once…"
  }),
  per_minute: opt(PositiveInt, () => 10).annotations({
    description:
      "…and per minute after it; beyond, **every** request from that address gets 429, valid tokens " +
      "included ([Failed authentications](security.md#failed-authentications))."
  })
}).annotations({ parseOptions: strict })

export const AuthConfig = Schema.Struct({
  service_tokens: opt(Schema.Array(ServiceToken), () => []).annotations({
    description:
      "Tokens that act as the service role `system` (what an application's own backend uses, for example to " + "create sessions)."
  }),
  rotation_overlap: opt(NonNegativeInt, () => 300).annotations({
    description:
      "Seconds a service token stays valid after a reload (SIGHUP) removed or replaced it, so that clients can move to " +
      "the new one ([Rotating credentials](operations.md#rotating-credentials))."
  }),
  print_service_tokens: opt(Schema.Boolean, () => false).annotations({
    description: "Development only: print the service tokens at start, so that a first request is easy."
  }),
  session_cache_ttl: opt(NonNegativeInt, () => 2).annotations({
    description: "Seconds a checked session token is remembered (`0`: look it up on every request)."
  }),
  jwt: opt(JwtConfig, () => JwtConfig.make({})).annotations({ description: "JSON Web Tokens." }),
  failed_auth: opt(FailedAuthConfig, () => FailedAuthConfig.make({})).annotations({
    description: "The bound on failed authentications per remote address."
  }),
  query_token: opt(Schema.Boolean, () => false).annotations({
    description:
      "Accept a credential in the `token` query parameter of the WebSocket URL (for clients that can set nothing but the " +
      "URL, such as metabuilder's bridge). Off by default: URLs end up in proxy logs and browser history. With it off, a " +
      "URL carrying `token` is refused with 401. The daemon never logs the URL ([Handshake credentials](security.md#credentials-at-the-handshake))."
  })
}).annotations({ parseOptions: strict })

export const RoleLimit = Schema.Struct({
  requests_per_minute: Schema.propertySignature(PositiveInt).annotations({ description: "Refill rate of the role's bucket." }),
  burst: Schema.propertySignature(PositiveInt).annotations({ description: "Size of the role's bucket." })
}).annotations({ parseOptions: strict })

export const RateLimitConfig = Schema.Struct({
  enabled: opt(Schema.Boolean, () => true).annotations({
    description: "Rate limiting on or off ([Rate limiting](security.md#rate-limiting))."
  }),
  requests_per_minute: opt(PositiveInt, () => 600).annotations({
    description: "Token bucket per principal: refill rate…"
  }),
  burst: opt(PositiveInt, () => 100).annotations({ description: "…and size. Over it: 429 with `retryAfter`." }),
  roles: opt(
    Schema.Struct({
      user: Schema.optionalWith(RoleLimit, { exact: true }).annotations({ description: "Limits of role `user`." }),
      admin: Schema.optionalWith(RoleLimit, { exact: true }).annotations({ description: "Limits of role `admin`." }),
      god: Schema.optionalWith(RoleLimit, { exact: true }).annotations({ description: "Limits of role `god`." }),
      supergod: Schema.optionalWith(RoleLimit, { exact: true }).annotations({
        description: "Limits of role `supergod`."
      }),
      system: Schema.optionalWith(RoleLimit, { exact: true }).annotations({
        description: "Limits of the service role `system`."
      })
    }).annotations({ parseOptions: strict }),
    () => ({})
  ).annotations({ description: "Per-role limits, replacing the two above for that role." }),
  store: opt(Schema.Literal("memory", "redis"), () => "memory" as const).annotations({
    description: "`memory`: per process; `redis`: one bucket per principal shared by every replica."
  }),
  redis_url: opt(Schema.Redacted(NonEmpty), () => Redacted.make("redis://127.0.0.1:6379")).annotations({
    description: "Redis for `store: redis`."
  }),
  key_prefix: opt(NonEmpty, () => "dbal:rl:").annotations({
    description: "Prefix of the Redis keys (`<prefix><role>:<user id>`)."
  }),
  on_store_error: opt(Schema.Literal("local", "open", "closed"), () => "local" as const).annotations({
    description: "When Redis cannot be reached: `local` (this process's own buckets), `open` (admit), `closed` (answer " + "503)."
  }),
  max_keys: opt(PositiveInt, () => 100_000).annotations({
    description: "Memory store: most principals remembered per role (idle ones are dropped first)."
  })
}).annotations({ parseOptions: strict })

export const AclConfig = Schema.Struct({
  rules_file: Schema.optionalWith(NonEmpty, { exact: true }).annotations({
    description:
      "Access rules per role × entity × operation (format: `config/acl_rules.yaml`, see [Access " +
      "rules](security.md#access-rules)); unreadable or broken at start: exit 1."
  }),
  cache_ttl: opt(NonNegativeInt, () => 300).annotations({
    description: "Seconds between checks of the rules file for changes (`0`: on every request)."
  })
}).annotations({ parseOptions: strict })

export const AuditConfig = Schema.Struct({
  stdout: opt(Schema.Boolean, () => false).annotations({
    description: 'Also write each record to stdout as `{"audit": {...}}` (for log collection on Kubernetes).'
  }),
  sql_table: Schema.optionalWith(NonEmpty.pipe(Schema.pattern(/^[a-z][a-z0-9_]{0,62}$/, { message: () => "a snake_case table name" })), {
    exact: true
  }).annotations({
    description:
      "Also insert each record into this table of the served database (created when the daemon starts; " + "columns `id`, `at`, `record`)."
  }),
  fsync: opt(Schema.Boolean, () => true).annotations({
    description:
      "A write is answered only after its record is durable: on disk (concurrent records share one fsync), or, with `journal` on PostgreSQL, committed with the write."
  }),
  journal: opt(Schema.Boolean, () => true).annotations({
    description:
      "PostgreSQL, with the audit file and `fsync`: single-row writes (create, update, delete, upsert, updateByField, deleteByField) and createMany commit their audit record in the same statement as the write, into `journal_table`, instead of waiting for a second fsync of the file; the record is appended to the file without waiting for the disk (with the records of the next 5 ms) and its row removed once the file holds it on disk. Rows left by a crash are appended to the file (marked `recovered`) when the daemon starts. Off: every write waits for the file's fsync. See docs/security.md, Audit."
  }),
  journal_table: opt(
    NonEmpty.pipe(Schema.pattern(/^[a-z][a-z0-9_]{0,62}$/, { message: () => "a snake_case table name" })),
    () => "dbal_audit_journal"
  ).annotations({
    description: "The table of `journal` (created when the daemon starts; columns `key`, `at`, `replica`, `record_id`, `record`)."
  }),
  max_size_mb: opt(PositiveInt, () => 100).annotations({
    description: "Rotate the file when a batch would take it past this many megabytes…"
  }),
  rotate_daily: opt(Schema.Boolean, () => true).annotations({
    description: "…and at the first record of each new UTC day."
  }),
  max_files: opt(PositiveInt, () => 14).annotations({
    description: "Rotated files kept (the oldest are removed first)…"
  }),
  max_age_days: opt(PositiveInt, () => 30).annotations({
    description:
      "…and none older than this many days. Every file removed is logged (WARN) and counted " +
      "(`dbal_audit_files_deleted_total`): ship the log to keep history ([Audit log: size and retention](security.md#audit-log-size-and-retention))."
  }),
  max_record_bytes: opt(
    Schema.Int.pipe(Schema.greaterThanOrEqualTo(4096, { message: () => "an integer >= 4096" })),
    () => 8192
  ).annotations({
    description:
      "Largest audit record, in bytes of its JSON line (at least 4096): a larger one (a bulk write's many " +
      "record ids) is summarized: identity, method, entity and outcome kept, the first record ids that fit, " +
      "and `summarized: {originalBytes, recordIdCount, detailsDropped}`."
  }),
  on_failure_reads: opt(Schema.Literal("allow", "deny"), () => "allow" as const).annotations({
    description: "While the audit log cannot be written, writes always get 503; reads are allowed or refused (503)."
  })
}).annotations({ parseOptions: strict })

export const SecurityConfig = Schema.Struct({
  sandbox: opt(Schema.Literal("none", "strict"), () => "none" as const).annotations({
    description: "`strict`: run under Node's permission model ([Sandbox](operations.md#sandbox)); needs `npm run " + "build`."
  }),
  sandbox_allow_root: opt(Schema.Boolean, () => false).annotations({
    description: "Let the strict sandbox start as root (refused otherwise)."
  }),
  audit_log: opt(Schema.Boolean, () => true).annotations({
    description: "Write an audit record for every request ([Audit log](security.md#audit-log))."
  }),
  audit_log_path: Schema.optionalWith(NonEmpty, { exact: true }).annotations({
    description: "The JSON-lines audit file (created `0600`, missing folders `0700`); without it, records go to stdout " + "only."
  }),
  audit: opt(AuditConfig, () => AuditConfig.make({})).annotations({
    description: "Where and how audit records are kept."
  }),
  never_expose: opt(
    Schema.Array(
      NonEmpty.pipe(Schema.pattern(/^[A-Z][A-Za-z0-9]*\.[a-z][A-Za-z0-9]*$/, { message: () => "Entity.field (e.g. User.email)" }))
    ),
    () => []
  ).annotations({
    description:
      'Fields never returned to anyone (`system` included), as `"Entity.field"` with wire names, in ' +
      "addition to the entities' own `never_expose`; a name that is not a field stops the start."
  }),
  rate_limit: opt(RateLimitConfig, () => RateLimitConfig.make({})).annotations({
    description: "Request rate limits per principal."
  }),
  acl: opt(AclConfig, () => AclConfig.make({})).annotations({
    description: "Access rules beyond the entities' defaults."
  }),
  auth: opt(AuthConfig, () => AuthConfig.make({})).annotations({
    description: "Authentication ([Authentication](security.md#authentication))."
  })
}).annotations({ parseOptions: strict })

export const RetryConfig = Schema.Struct({
  max_retries: opt(NonNegativeInt, () => 3).annotations({
    description: "Retries of one transient failure (`0`: none)."
  }),
  initial_delay_ms: opt(PositiveInt, () => 100).annotations({
    description: "First delay in milliseconds; doubled at each retry, jittered ×0.8–1.2…"
  }),
  max_delay_ms: opt(PositiveInt, () => 5000).annotations({ description: "…and capped at this many milliseconds." })
}).annotations({ parseOptions: strict })

export const PerformanceConfig = Schema.Struct({
  query_timeout: opt(PositiveInt, () => 30000).annotations({
    description:
      "Bound on every request in milliseconds, retries included; past it the answer is 504 " +
      "([Timeouts](operations.md#timeouts-and-cancellation))."
  }),
  max_query_complexity: opt(PositiveInt, () => 1000).annotations({
    description:
      "Largest score of a `list`, `count`, `findFirst`, `updateMany` or `deleteMany`; 422 past it ([Query " +
      "complexity](operations.md#query-complexity))."
  }),
  connection_pool_size: opt(PositiveInt, () => 20).annotations({
    description: "Pool size when `database.pool_size` is not set."
  }),
  cache_enabled: opt(Schema.Boolean, () => false).annotations({
    description: "Turn on the result cache ([Result cache](operations.md#result-cache))."
  }),
  cache_size_mb: opt(PositiveInt, () => 256).annotations({
    description: "Memory bound of the result cache in megabytes (approximate)."
  }),
  read_batch: opt(NonNegativeInt, () => 2).annotations({
    description:
      "PostgreSQL: concurrent reads by id of one entity under one access decision run alone while fewer than this many " +
      "of their statements are running, and past that as one statement (`= ANY($1)`) per queue; `0`: every read " +
      "alone ([Reads by id](architecture.md#reads-by-id))."
  }),
  default_page_size: opt(PositiveInt, () => 20).annotations({
    description: "`list` limit when none is given (at most `max_page_size`)."
  }),
  max_page_size: opt(PositiveInt, () => 100).annotations({ description: "Largest `list` limit." }),
  max_batch_size: opt(PositiveInt, () => 1000).annotations({ description: "Most records one `createMany` may insert." }),
  max_transaction_ops: opt(PositiveInt, () => 100).annotations({
    description: "Most operations one `transaction` may hold."
  }),
  retry: opt(RetryConfig, () => RetryConfig.make({})).annotations({
    description:
      "Retries of transient database failures: reads always, writes only when nothing can have been applied " +
      "([Retries](operations.md#retries))."
  })
}).annotations({ parseOptions: strict })

export const TracingConfig = Schema.Struct({
  enabled: opt(Schema.Boolean, () => false).annotations({
    description: "Export spans over OTLP/HTTP ([Tracing and logs](operations.md#tracing-and-logs))."
  }),
  otlp_endpoint: Schema.optionalWith(NonEmpty, { exact: true }).annotations({
    description:
      "The collector's traces endpoint, e.g. `http://otel-collector:4318/v1/traces`; without it nothing is " +
      "exported, and a warning is logged."
  }),
  service_name: opt(NonEmpty, () => "dbal-daemon").annotations({ description: "`service.name` of the exported spans." })
}).annotations({ parseOptions: strict })

export const EntitiesConfig = Schema.Struct({
  dir: Schema.optionalWith(NonEmpty, { exact: true }).annotations({
    description: "Folder of entity definitions (`*.yaml`/`*.yml`, searched recursively). Default: the package's " + "`config/entities`."
  }),
  prisma_schema: Schema.optionalWith(NonEmpty, { exact: true }).annotations({
    description:
      "Read the entities from this `schema.prisma` instead; `dir` is then read only for `prisma_naming: " +
      "snake_case` ([Prisma bridge](entities.md#prisma-bridge))."
  }),
  prisma_naming: opt(Schema.Literal("prisma", "snake_case"), () => "prisma" as const).annotations({
    description:
      "How tables and columns of a schema.prisma's models are named when @@map/@map say nothing. " +
      '`prisma`: as `prisma migrate` creates them (the model\'s and field\'s own names: "User", "createdAt"). ' +
      "`snake_case`: as the daemon's YAML entities name them (snake_case columns; the table of the same entity in " +
      "`entities.dir`, else the snake_case plural of the model name)."
  })
}).annotations({ parseOptions: strict })

export const LoggingConfig = Schema.Struct({
  level: opt(Schema.Literal("debug", "info", "warning", "error"), () => "info" as const).annotations({
    description: "Lowest level of the JSON log lines written to stdout."
  })
}).annotations({ parseOptions: strict })

export const ClusterConfig = Schema.Struct({
  replica_name: Schema.optionalWith(NonEmpty, { exact: true }).annotations({
    description: "This replica's name, written into every audit record. Default: the host name."
  }),
  changes: opt(Schema.Literal("none", "postgresql", "redis"), () => "none" as const).annotations({
    description:
      "How replicas tell each other about writes, so that caches forget at once on every replica: `none` (a " +
      "single replica), `postgresql` (LISTEN/NOTIFY on the served database; needs `database.adapter: " +
      "postgresql`), `redis` (pub/sub) ([Replicas](deployment.md#replicas))."
  }),
  channel: opt(
    NonEmpty.pipe(Schema.pattern(/^[a-z_][a-z0-9_]{0,62}$/, { message: () => "a lower-case identifier" })),
    () => "dbal_changes"
  ).annotations({
    description: "The NOTIFY channel or Redis pub/sub channel."
  }),
  redis_url: opt(Schema.Redacted(NonEmpty), () => Redacted.make("redis://127.0.0.1:6379")).annotations({
    description: "Redis for `changes: redis`."
  })
}).annotations({ parseOptions: strict })

export const RealtimeConfig = Schema.Struct({
  enabled: opt(Schema.Boolean, () => true).annotations({
    description:
      "Live changes over the WebSocket (`subscribe`, [Realtime](realtime.md)). On, writes read the rows they " +
      "update or delete before changing them (for the events' access checks) and announce the rows they touched; " +
      "off, `subscribe` answers 501."
  }),
  max_subscriptions_per_connection: opt(PositiveInt, () => 100).annotations({
    description: "Subscriptions one connection may hold; `subscribe` past it answers 429."
  }),
  max_subscriptions_per_principal: opt(PositiveInt, () => 1000).annotations({
    description: "Subscriptions one principal (user id) may hold on this replica, over all its connections; past it 429."
  }),
  max_buffered_bytes: opt(PositiveInt, () => 4 * 1024 * 1024).annotations({
    description:
      "Bytes of events a subscriber may leave unread before its connection is closed with code 4008 (it never " + "slows the others down)."
  }),
  revalidate_interval: opt(PositiveInt, () => 30).annotations({
    description:
      "Seconds between checks of every subscriber's credentials (expiry, deletion, role); they are also checked " +
      "at once when a Session or User is written, and when a session expires."
  })
}).annotations({ parseOptions: strict })

export const ConfigFile = Schema.Struct({
  server: opt(ServerConfig, () => ServerConfig.make({})).annotations({
    description: "The listener: the WebSocket and the HTTP endpoints on one port."
  }),
  database: opt(DatabaseConfig, () => DatabaseConfig.make({})).annotations({
    description: "The database the daemon serves."
  }),
  security: opt(SecurityConfig, () => SecurityConfig.make({})).annotations({
    description: "Authentication, access rules, rate limits, audit log and sandbox."
  }),
  performance: opt(PerformanceConfig, () => PerformanceConfig.make({})).annotations({
    description: "Bounds on requests, pages, retries and the result cache."
  }),
  entities: opt(EntitiesConfig, () => EntitiesConfig.make({})).annotations({
    description: "Where the entity definitions come from ([Entities](entities.md))."
  }),
  logging: opt(LoggingConfig, () => LoggingConfig.make({})).annotations({ description: "Log lines." }),
  tracing: opt(TracingConfig, () => TracingConfig.make({})).annotations({ description: "OpenTelemetry spans." }),
  cluster: opt(ClusterConfig, () => ClusterConfig.make({})).annotations({
    description: "Several replicas behind one address ([Replicas](deployment.md#replicas))."
  }),
  realtime: opt(RealtimeConfig, () => RealtimeConfig.make({})).annotations({
    description: "Subscriptions to live changes ([Realtime](realtime.md))."
  })
}).annotations({ parseOptions: strict })

export type ConfigFile = typeof ConfigFile.Type

/** The decoded configuration plus what was resolved from the environment of the process. */
export interface DaemonConfig extends ConfigFile {
  /** Absolute path of the file this came from (relative paths in it are resolved against it). */
  readonly sourcePath: string
  /** Absolute folder of the entity definitions. */
  readonly entitiesDir: string
  /** Absolute path of the Prisma schema, when entities come from one. */
  readonly prismaSchema?: string
}

export class AppConfig extends Context.Tag("dbal/AppConfig")<AppConfig, DaemonConfig>() {}
