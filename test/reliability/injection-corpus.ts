/**
 * The injection corpus of the reliability suite: classic SQL injection payloads, each sent by
 * injection.test.ts in every position a client controls. Every payload is a plain string; what a
 * correct daemon does with it depends only on where it is sent (stored verbatim as a value,
 * matched literally by a filter, refused as an identifier), never on what it says.
 *
 * Kinds: tautologies, UNION SELECT, stacked queries, comments, quote and backslash escapes
 * (MySQL `\'`, NO_BACKSLASH_ESCAPES, multi-byte tricks), placeholder look-alikes, hex / CHAR()
 * encodings, time-based probes, catalog reads, error-based probes, file and extension access,
 * Unicode quote look-alikes, NUL bytes and unpaired surrogates, JSON-path and NoSQL-style
 * strings, LIKE wildcards (which must match literally, the daemon's own escape character `!`
 * included), identifiers with quotes / backticks / brackets, JavaScript prototype keys.
 *
 * Time-based payloads sleep SLEEP_SECONDS: a request that took that long would mean that one of
 * them ran. Payloads that name a file use PWNED_PREFIX, which the test checks stays absent.
 * No two payloads are equal once trailing spaces are dropped, so that each one can be a unique
 * name on every database.
 */

export const SLEEP_SECONDS = 10

/** Files named by the file-writing payloads (none may exist after a run). */
export const PWNED_PREFIX = "/tmp/dbal-injection-pwned"

export type PayloadKind =
  | "tautology"
  | "union"
  | "stacked"
  | "comment"
  | "escape"
  | "placeholder"
  | "encoding"
  | "time"
  | "catalog"
  | "error-based"
  | "file"
  | "unicode"
  | "nul"
  | "json-path"
  | "wildcard"
  | "identifier"
  | "prototype"
  | "oversize"

export interface Payload {
  readonly kind: PayloadKind
  readonly text: string
}

const S = SLEEP_SECONDS
const p = (kind: PayloadKind, ...texts: ReadonlyArray<string>): Array<Payload> => texts.map((text) => ({ kind, text }))

export const CORPUS: ReadonlyArray<Payload> = [
  ...p(
    "tautology",
    "' OR '1'='1",
    "' OR 1=1--",
    '" OR "1"="1',
    "' OR 'a'='a' --",
    "1 OR 1=1",
    "') OR ('1'='1",
    "')) OR (('x'='x",
    "admin'--",
    "' OR ''='",
    "' OR 1=1 LIMIT 1 --",
    "x' OR name LIKE '%",
    "' OR TRUE --",
    "1' OR '1'='1' /*",
    "' OR username IS NOT NULL OR '1'='",
    "-1' OR 2>1 --"
  ),
  ...p(
    "union",
    "' UNION SELECT NULL--",
    "' UNION SELECT username, email FROM users--",
    "' UNION ALL SELECT password_hash, NULL FROM credentials--",
    "1 UNION SELECT 1,2,3,4,5,6,7,8,9,10,11 --",
    "') UNION SELECT token FROM sessions --",
    "' UNION SELECT id, role, 'supergod' FROM users WHERE '1'='1"
  ),
  ...p(
    "stacked",
    "'; DROP TABLE users; --",
    "'; DROP TABLE lua_scripts CASCADE; --",
    "1; DELETE FROM users",
    "'); DELETE FROM credentials; --",
    "'; UPDATE users SET role='supergod'; --",
    "'; INSERT INTO users (id, username, email, role) VALUES ('00000000-0000-4000-8000-000000000000','evil','evil@example.com','supergod'); --",
    "'; CREATE TABLE pwned (x int); --",
    "'; TRUNCATE TABLE page_views; --",
    '"; DROP TABLE "users"; --',
    "`; DROP TABLE `users`; --",
    "'; ALTER TABLE users ADD COLUMN pwned int; --",
    "'; CREATE ROLE pwned LOGIN SUPERUSER; --",
    "'; GRANT ALL PRIVILEGES ON *.* TO 'pwned'@'%'; --",
    "'; CREATE TRIGGER pwned AFTER INSERT ON users BEGIN DELETE FROM users; END; --"
  ),
  ...p(
    "comment",
    "admin' #",
    "admin'/*",
    "*/ OR 1=1 /*",
    "' /*!50000OR*/ 1=1 -- ",
    "'-- -",
    "'--\n OR 1=1",
    "'/**/OR/**/1=1/**/--",
    "--",
    "/*",
    "#"
  ),
  ...p(
    "escape",
    "\\' OR 1=1 -- ",
    "\\\\' OR 1=1 -- ",
    "\\'; DROP TABLE users; -- ",
    "''' OR ''1''=''1",
    "\\",
    "\\\\",
    "\\'' OR 1=1 -- ",
    "\\\\\\' OR 1=1 #",
    "%27 OR 1=1",
    "\\x27 OR 1=1",
    "\u00bf' OR 1=1 -- ",
    "\u7e17' OR 1=1 -- ",
    "E'\\x27 OR 1=1",
    "$$ OR 1=1 $$",
    "$tag$; DROP TABLE users; $tag$",
    "'\r\nOR 1=1\r\n--",
    "'\tOR\t1=1\t--",
    "q'[' OR 1=1]'"
  ),
  ...p("placeholder", "?", "? OR 1=1", "$1", ":name", "@p1", "%s", "{0}", "${1}"),
  ...p(
    "encoding",
    "0x27204f5220313d31",
    "CHAR(39)||' OR 1=1'",
    "CHAR(39,32,79,82,32,49,61,49)",
    "CHR(39)||'x'",
    "UNHEX('27204F5220313D31')",
    "X'27204f52'",
    "CONVERT(0x27 USING utf8mb4)",
    "%2527%20OR%201%3D1",
    "JyBPUiAnMSc9JzE=",
    "&#39; OR 1=1"
  ),
  ...p(
    "time",
    `'; SELECT pg_sleep(${S}); --`,
    `' OR pg_sleep(${S}) IS NULL --`,
    `1) OR pg_sleep(${S})--`,
    `' AND SLEEP(${S}) --`,
    `' OR SLEEP(${S}) #`,
    `1 AND (SELECT * FROM (SELECT(SLEEP(${S})))a)--`,
    "' OR BENCHMARK(50000000, MD5(1)) #",
    "' AND 1=LIKE('ABCDEFG', UPPER(HEX(RANDOMBLOB(500000000/2)))) --",
    "' OR (SELECT count(*) FROM generate_series(1, 100000000)) > 0 --",
    `'; WAITFOR DELAY '0:0:${S}' --`
  ),
  ...p(
    "catalog",
    "' UNION SELECT table_name FROM information_schema.tables --",
    "' UNION SELECT column_name FROM information_schema.columns WHERE table_name='users' --",
    "' UNION SELECT name, sql FROM sqlite_master --",
    "' AND (SELECT COUNT(*) FROM sqlite_schema) > 0 --",
    "' UNION SELECT tablename FROM pg_catalog.pg_tables --",
    "' UNION SELECT usename, passwd FROM pg_shadow --",
    "' UNION SELECT user, authentication_string FROM mysql.user #",
    "' UNION SELECT @@version #",
    "' UNION SELECT sqlite_version() --",
    "'; SELECT version(); --"
  ),
  ...p(
    "error-based",
    "' AND extractvalue(1, concat(0x7e, (SELECT database()))) --",
    "' AND 1=CAST((SELECT current_user) AS int) --",
    "' AND updatexml(1, concat(0x7e, version()), 1) #",
    "'||(SELECT 1/0)||'"
  ),
  ...p(
    "file",
    `'; ATTACH DATABASE '${PWNED_PREFIX}.db' AS pwned; CREATE TABLE pwned.t (x); --`,
    `'; COPY (SELECT '') TO '${PWNED_PREFIX}.copy'; --`,
    `'; COPY (SELECT '') TO PROGRAM 'touch ${PWNED_PREFIX}.program'; --`,
    `' UNION SELECT 1 INTO OUTFILE '${PWNED_PREFIX}.outfile' #`,
    "' UNION SELECT pg_read_file('/etc/passwd') --",
    "' UNION SELECT LOAD_FILE('/etc/passwd') #",
    "' AND load_extension('/tmp/evil.so') --",
    "'; SELECT lo_import('/etc/passwd'); --"
  ),
  ...p(
    "unicode",
    "\u02bc OR 1=1 --",
    "\u2019 OR \u20181\u2019=\u20181",
    "\uff07 OR \uff071\uff07=\uff071",
    "\u2033 OR 1=1 --",
    "\uff02 OR \uff021\uff02=\uff021",
    "'\u200b OR 1=1 --",
    "\u202e' OR 1=1 --",
    "\ufeff' OR 1=1 --",
    "'\ud83d\ude42 OR '\ud83d\ude42'='\ud83d\ude42",
    "e\u0301' OR 'e\u0301'='\u00e9",
    "\ud800' OR 1=1 --",
    "'\udfff",
    "\u0130' OR 1=1 --"
  ),
  ...p("nul", "'\u0000' OR 1=1 --", "\u0000", "admin\u0000' --", "%00' OR 1=1 --", "\\0' OR 1=1 --"),
  ...p(
    "json-path",
    "$.a' || '",
    "$[0]",
    "$..password",
    "' || json_extract(record, '$.x') || '",
    '{"$gt": ""}',
    '\'}], "role": "supergod", "x": [{\'',
    '{"a": 1}',
    "->>'password_hash'",
    "data->'x' = '1' OR 1=1",
    "[1, 2, 3]",
    "null"
  ),
  ...p(
    "wildcard",
    "%",
    "_",
    "%%",
    "a%b",
    "_%_",
    "!",
    "!%",
    "!!",
    "![",
    "[a-z]%",
    "*",
    ".*",
    "%' OR '1'='1",
    "\\%",
    "\\_",
    "lit-%",
    "lit-_"
  ),
  ...p(
    "identifier",
    "users",
    '"users"',
    "`users`",
    "[users]",
    'users"; DROP TABLE users; --',
    "users`; DROP TABLE users; --",
    "name] FROM users; --",
    "User; DROP TABLE users",
    "username`",
    '"username"',
    "username--",
    "user name",
    "USERNAME",
    "Username",
    "user",
    "USER",
    "password_hash",
    "passwordHash",
    "created_at",
    'id"',
    "1",
    "''",
    '""',
    "users.username",
    "lua_scripts.code",
    "a.b.c"
  ),
  ...p(
    "prototype",
    "__proto__",
    "constructor",
    "prototype",
    "toString",
    "hasOwnProperty",
    "valueOf",
    "__defineGetter__",
    "constructor.prototype",
    "__proto__.polluted",
    "[object Object]",
    "undefined",
    "NaN"
  ),
  ...p("oversize", `' OR 1=1 -- ${"A".repeat(5000)}`, "'".repeat(300), `${"x".repeat(255)}' OR 1=1 --`)
]
