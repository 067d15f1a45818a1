/**
 * The shape of the configuration file, as a Schema: decoding it reports every problem with its
 * key path, and yields the typed `DaemonConfig` the rest of the daemon reads through `AppConfig`.
 * Secrets decode to `Redacted` so that they never reach a log line or a JSON dump.
 */
import { Context, Redacted, Schema } from "effect"
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
  enabled: opt(Schema.Boolean, () => false),
  /** PEM certificate chain and private key of the server (re-read on SIGHUP). */
  cert_file: Schema.optionalWith(NonEmpty, { exact: true }),
  key_file: Schema.optionalWith(NonEmpty, { exact: true }),
  /** PEM CA bundle: when set, clients must present a certificate it signed (mTLS). */
  ca_file: Schema.optionalWith(NonEmpty, { exact: true }),
  min_version: opt(Schema.Literal("TLSv1.2", "TLSv1.3"), () => "TLSv1.2" as const)
}).annotations({ parseOptions: strict })

export const ServerConfig = Schema.Struct({
  host: opt(NonEmpty, () => "127.0.0.1"),
  port: opt(Port, () => 50051),
  /** Largest frame answered with a structured error; larger ones are refused with 400. */
  max_payload: opt(PositiveInt, () => 1024 * 1024),
  /** Requests of one connection executing at once; further frames wait (the socket is paused). */
  max_in_flight: opt(PositiveInt, () => 64),
  /** Open WebSocket connections in total (more: HTTP 503) and per remote address (more: HTTP 429). */
  max_connections: opt(PositiveInt, () => 10_000),
  max_connections_per_address: opt(PositiveInt, () => 1_000),
  /** Seconds without a frame from the client before the connection is closed (0: never). */
  idle_timeout: opt(NonNegativeInt, () => 600),
  /** Seconds between pings; a peer that has not answered the previous ping is dropped (0: off). */
  heartbeat_interval: opt(NonNegativeInt, () => 30),
  /** Bytes of answers a slow reader may leave unsent before its connection is dropped. */
  max_buffered_bytes: opt(PositiveInt, () => 16 * 1024 * 1024),
  /** Seconds in-flight requests get to finish on SIGTERM/SIGINT before sockets are closed. */
  shutdown_grace: opt(NonNegativeInt, () => 10),
  tls: opt(TlsConfig, () => TlsConfig.make({})),
  trusted_proxies: opt(
    Schema.Array(
      NonEmpty.pipe(Schema.filter((s) => parseCidr(s) !== undefined, { message: () => "a CIDR block (e.g. 10.0.0.0/8, 2001:db8::/32) or an IP address" }))
    ).annotations({
      description:
        "CIDR blocks of the proxies and load balancers in front of the daemon. Only a peer inside one may name the client: its X-Forwarded-For (read from the right, skipping trusted hops) or, with proxy_protocol, its PROXY header gives the address that audit records, failed-auth throttling and max_connections_per_address use. Default: none (the peer's own address, forwarding headers ignored)."
    }),
    () => []
  ),
  proxy_protocol: opt(
    Schema.Boolean.annotations({
      description:
        "Read a PROXY protocol header (v1 or v2) at the start of every connection from a trusted proxy (server.trusted_proxies), which must then send one; a connection from any other peer that starts with one is refused. Off by default: it changes what the daemon expects on the socket, so enable it only together with the proxy's own setting."
    }),
    () => false
  )
}).annotations({ parseOptions: strict })

export const Adapter = Schema.Literal("sqlite", "postgresql", "mysql")
export type Adapter = typeof Adapter.Type

export const ConnectionConfig = Schema.Struct({
  /** sqlite: the database file (relative paths are relative to the configuration file). */
  filename: Schema.optionalWith(NonEmpty, { exact: true }),
  /** sqlite: how long a writer waits for the lock, in milliseconds. */
  busy_timeout: opt(NonNegativeInt, () => 5000),
  host: Schema.optionalWith(NonEmpty, { exact: true }),
  port: Schema.optionalWith(Port, { exact: true }),
  database: Schema.optionalWith(NonEmpty, { exact: true }),
  user: Schema.optionalWith(NonEmpty, { exact: true }),
  password: Schema.optionalWith(Secret, { exact: true }),
  /** A file holding the password (for example a mounted Kubernetes secret). */
  password_file: Schema.optionalWith(NonEmpty, { exact: true }),
  ssl_mode: opt(Schema.Literal("disable", "require", "verify-full"), () => "disable" as const)
}).annotations({ parseOptions: strict })

export const DatabaseConfig = Schema.Struct({
  adapter: opt(Adapter, () => "sqlite" as const),
  connection: opt(ConnectionConfig, () => ({ busy_timeout: 5000, ssl_mode: "disable" as const })),
  pool_size: Schema.optionalWith(PositiveInt, { exact: true }),
  /** Connect timeout, milliseconds (an unreachable database answers 503 after this). */
  timeout: opt(PositiveInt, () => 5000),
  auto_migrate: opt(Schema.Boolean, () => false)
}).annotations({ parseOptions: strict })

export const ServiceToken = Schema.Struct({
  name: NonEmpty.pipe(Schema.pattern(/^[A-Za-z0-9_.-]{1,64}$/, { message: () => "a name of letters, digits, _ . - (at most 64)" })),
  token: Schema.Redacted(
    Schema.String.pipe(Schema.minLength(16, { message: () => "a token of at least 16 characters" }))
  )
}).annotations({ parseOptions: strict })

export const JwtAlgorithm = Schema.Literal("HS256", "HS384", "HS512", "RS256", "ES256", "EdDSA")

export const JwtConfig = Schema.Struct({
  enabled: opt(Schema.Boolean, () => false),
  /** Accepted signature algorithms. */
  algorithms: opt(Schema.Array(JwtAlgorithm), () => ["HS256"] as const),
  /** HS*: the shared secret (at least 32 bytes). */
  secret: Schema.optionalWith(
    Schema.Redacted(Schema.String.pipe(Schema.minLength(32, { message: () => "a secret of at least 32 characters" }))),
    { exact: true }
  ),
  /** RS256/ES256/EdDSA: a PEM public key (SPKI). */
  public_key_file: Schema.optionalWith(NonEmpty, { exact: true }),
  /** Or a JSON Web Key Set file ({"keys": [...]}). */
  jwks_file: Schema.optionalWith(NonEmpty, { exact: true }),
  issuer: Schema.optionalWith(NonEmpty, { exact: true }),
  audience: Schema.optionalWith(NonEmpty, { exact: true }),
  /** Claim that carries the user's role (user, admin, god, supergod). */
  role_claim: opt(NonEmpty, () => "role"),
  /** Seconds of clock skew accepted on exp and nbf. */
  clock_tolerance: opt(NonNegativeInt, () => 5)
}).annotations({ parseOptions: strict })

export const FailedAuthConfig = Schema.Struct({
  /** Failed authentications a remote address may make in a burst... */
  burst: opt(PositiveInt, () => 10),
  /** ...and per minute after it; beyond that its authentications get 429. */
  per_minute: opt(PositiveInt, () => 10)
}).annotations({ parseOptions: strict })

export const AuthConfig = Schema.Struct({
  service_tokens: opt(Schema.Array(ServiceToken), () => []),
  /** Development only: print the service tokens at start so that a first request is easy. */
  print_service_tokens: opt(Schema.Boolean, () => false),
  /** Seconds a validated session token is remembered (0: look it up on every request). */
  session_cache_ttl: opt(NonNegativeInt, () => 2),
  jwt: opt(JwtConfig, () => JwtConfig.make({})),
  failed_auth: opt(FailedAuthConfig, () => FailedAuthConfig.make({})),
  query_token: opt(
    Schema.Boolean.annotations({
      description:
        "Accept a credential in the `token` query parameter of the WebSocket URL (for clients that can set nothing but the URL). Off by default: URLs end up in proxy logs and browser history. With it off, a URL carrying `token` is refused with 401. The daemon never logs the URL."
    }),
    () => false
  )
}).annotations({ parseOptions: strict })

export const RoleLimit = Schema.Struct({
  requests_per_minute: PositiveInt,
  burst: PositiveInt
}).annotations({ parseOptions: strict })

export const RateLimitConfig = Schema.Struct({
  enabled: opt(Schema.Boolean, () => true),
  requests_per_minute: opt(PositiveInt, () => 600),
  burst: opt(PositiveInt, () => 100),
  /** Per-role limits replacing the two above for that role. */
  roles: opt(
    Schema.Struct({
      user: Schema.optionalWith(RoleLimit, { exact: true }),
      admin: Schema.optionalWith(RoleLimit, { exact: true }),
      god: Schema.optionalWith(RoleLimit, { exact: true }),
      supergod: Schema.optionalWith(RoleLimit, { exact: true }),
      system: Schema.optionalWith(RoleLimit, { exact: true })
    }).annotations({ parseOptions: strict }),
    () => ({})
  ),
  /** memory: per process; redis: shared by every replica. */
  store: opt(Schema.Literal("memory", "redis"), () => "memory" as const),
  redis_url: opt(Schema.Redacted(NonEmpty), () => Redacted.make("redis://127.0.0.1:6379")),
  key_prefix: opt(NonEmpty, () => "dbal:rl:"),
  /** When Redis cannot be reached: local (this process's own buckets), open (admit), closed (503). */
  on_store_error: opt(Schema.Literal("local", "open", "closed"), () => "local" as const),
  /** Memory store: most principals remembered at once (idle ones are dropped first). */
  max_keys: opt(PositiveInt, () => 100_000)
}).annotations({ parseOptions: strict })

export const AclConfig = Schema.Struct({
  rules_file: Schema.optionalWith(NonEmpty, { exact: true }),
  /** Seconds between checks of the rules file for changes (0: every request). */
  cache_ttl: opt(NonNegativeInt, () => 300)
}).annotations({ parseOptions: strict })

export const AuditConfig = Schema.Struct({
  /** Also write every record to stdout (for log collection on Kubernetes). */
  stdout: opt(Schema.Boolean, () => false),
  /** Also insert every record into this table (created, if missing, when the daemon starts). */
  sql_table: Schema.optionalWith(
    NonEmpty.pipe(Schema.pattern(/^[a-z][a-z0-9_]{0,62}$/, { message: () => "a snake_case table name" })),
    { exact: true }
  ),
  /** fsync the file before a write is acknowledged (batched across concurrent requests). */
  fsync: opt(Schema.Boolean, () => true),
  /** Rotate the file when it grows past this size... */
  max_size_mb: opt(PositiveInt, () => 100),
  /** ...and at the first record of each new UTC day. */
  rotate_daily: opt(Schema.Boolean, () => true),
  /** Rotated files kept (oldest removed first)... */
  max_files: opt(PositiveInt, () => 14),
  /** ...and none older than this many days. */
  max_age_days: opt(PositiveInt, () => 30),
  /** When the audit log cannot be written: writes always fail with 503; reads are allowed or denied. */
  on_failure_reads: opt(Schema.Literal("allow", "deny"), () => "allow" as const)
}).annotations({ parseOptions: strict })

export const SecurityConfig = Schema.Struct({
  /** strict: run under Node's permission model (see README, "Sandbox"). */
  sandbox: opt(Schema.Literal("none", "strict"), () => "none" as const),
  /** Let the strict sandbox run as root (refused by default). */
  sandbox_allow_root: opt(Schema.Boolean, () => false),
  audit_log: opt(Schema.Boolean, () => true),
  audit_log_path: Schema.optionalWith(NonEmpty, { exact: true }),
  audit: opt(AuditConfig, () => AuditConfig.make({})),
  /** Fields never returned to anyone, in addition to the entities' own: "Entity.field". */
  never_expose: opt(Schema.Array(NonEmpty.pipe(Schema.pattern(/^[A-Z][A-Za-z0-9]*\.[a-z][A-Za-z0-9]*$/, { message: () => "Entity.field (e.g. User.email)" }))), () => []),
  rate_limit: opt(RateLimitConfig, () => RateLimitConfig.make({})),
  acl: opt(AclConfig, () => ({ cache_ttl: 300 })),
  auth: opt(AuthConfig, () => AuthConfig.make({}))
}).annotations({ parseOptions: strict })

export const PerformanceConfig = Schema.Struct({
  /** Bound on every request, milliseconds (504 past it). */
  query_timeout: opt(PositiveInt, () => 30000),
  max_query_complexity: opt(PositiveInt, () => 1000),
  connection_pool_size: opt(PositiveInt, () => 20),
  cache_enabled: opt(Schema.Boolean, () => false),
  cache_size_mb: opt(PositiveInt, () => 256),
  default_page_size: opt(PositiveInt, () => 20),
  max_page_size: opt(PositiveInt, () => 100),
  /** Most records one createMany may insert. */
  max_batch_size: opt(PositiveInt, () => 1000),
  /** Most operations one `transaction` may hold. */
  max_transaction_ops: opt(PositiveInt, () => 100),
  /** Transient database failures retried (reads always; writes only when nothing was sent). */
  retry: opt(
    Schema.Struct({
      max_retries: opt(NonNegativeInt, () => 3),
      initial_delay_ms: opt(PositiveInt, () => 100),
      max_delay_ms: opt(PositiveInt, () => 5000)
    }).annotations({ parseOptions: strict }),
    () => ({ max_retries: 3, initial_delay_ms: 100, max_delay_ms: 5000 })
  )
}).annotations({ parseOptions: strict })

export const TracingConfig = Schema.Struct({
  /** Export spans over OTLP/HTTP (off by default). */
  enabled: opt(Schema.Boolean, () => false),
  /** OTLP/HTTP traces endpoint, e.g. http://otel-collector:4318/v1/traces */
  otlp_endpoint: Schema.optionalWith(NonEmpty, { exact: true }),
  service_name: opt(NonEmpty, () => "dbal-daemon")
}).annotations({ parseOptions: strict })

export const EntitiesConfig = Schema.Struct({
  /** Folder of entity definitions (*.yaml); default: the shipped config/entities. */
  dir: Schema.optionalWith(NonEmpty, { exact: true }),
  /** A schema.prisma to read the entities from instead (the YAML folder is then not read). */
  prisma_schema: Schema.optionalWith(NonEmpty, { exact: true })
}).annotations({ parseOptions: strict })

export const LoggingConfig = Schema.Struct({
  level: opt(Schema.Literal("debug", "info", "warning", "error"), () => "info" as const)
}).annotations({ parseOptions: strict })

export const ClusterConfig = Schema.Struct({
  /** This replica's name, written into every audit record (default: the host name). */
  replica_name: Schema.optionalWith(NonEmpty, { exact: true }),
  /**
   * How replicas tell each other about writes (so that caches forget at once on every replica):
   * none (a single replica), postgresql (LISTEN/NOTIFY on the served database), redis (pub/sub).
   */
  changes: opt(Schema.Literal("none", "postgresql", "redis"), () => "none" as const),
  channel: opt(NonEmpty.pipe(Schema.pattern(/^[a-z_][a-z0-9_]{0,62}$/, { message: () => "a lower-case identifier" })), () => "dbal_changes"),
  redis_url: opt(Schema.Redacted(NonEmpty), () => Redacted.make("redis://127.0.0.1:6379"))
}).annotations({ parseOptions: strict })

export const ConfigFile = Schema.Struct({
  server: opt(ServerConfig, () => ServerConfig.make({})),
  database: opt(DatabaseConfig, () => DatabaseConfig.make({})),
  security: opt(SecurityConfig, () => SecurityConfig.make({})),
  performance: opt(PerformanceConfig, () => PerformanceConfig.make({})),
  entities: opt(EntitiesConfig, () => ({})),
  logging: opt(LoggingConfig, () => ({ level: "info" as const })),
  tracing: opt(TracingConfig, () => TracingConfig.make({})),
  cluster: opt(ClusterConfig, () => ClusterConfig.make({}))
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
