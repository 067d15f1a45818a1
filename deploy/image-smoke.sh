#!/usr/bin/env bash
# Smoke test of the container image without a container engine: performs the steps of
# deploy/Dockerfile on this machine and starts the daemon the way the image does.
#
#   deploy/image-smoke.sh
#
# 1. Each stage of the Dockerfile gets its own empty folder standing for its root file system
#    ($WORK/<stage>); the lines below between "stages" markers repeat the Dockerfile's FROM,
#    WORKDIR, ENV, COPY, USER and npm RUN instructions word for word (test/deploy/image.test.ts
#    compares them, so the two cannot drift apart). COPY --from=<stage> reads that stage's folder.
#    Steps of the Dockerfile that only make sense in an image (creating the user, npm cache clean)
#    are done by equivalent commands below or left out.
# 2. The runtime stage's daemon is started with the configuration the image carries
#    (config/production.yaml as /etc/dbal/config.yaml), its secrets and database from the
#    environment, as the image's numeric USER (via setpriv when run as root), on a free port.
# 3. It must answer /livez (also through the Dockerfile's own HEALTHCHECK command), /readyz and
#    /health, run as that user, and exit 0 on SIGTERM.
#
# Environment (all optional):
#   DBAL_SMOKE_DB_HOST/PORT/USER/NAME  PostgreSQL to use (default 127.0.0.1, 5432, postgres, postgres)
#   DBAL_DB_PASSWORD                   its password (default: a placeholder, for trust auth)
#   DBAL_SMOKE_MIGRATE=1               run `dbal-daemon migrate` first (for a throw-away database)
#   DBAL_SMOKE_DIR                     work folder (default: a new temporary folder, removed at the end)
#   DBAL_SMOKE_TMP                     where that temporary folder goes (default /dev/shm if usable, else $TMPDIR or /tmp)
#   DBAL_SMOKE_KEEP=1                  keep the work folder
# The npm cache of the calling user is reused (prefer-offline).
set -euo pipefail
umask 022

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DOCKERFILE="$ROOT/deploy/Dockerfile"
# Where the work folder goes: two dependency trees are written and removed, so a memory file
# system (/dev/shm, when it is large enough and allows executables) is much faster than a disk.
tmp_base() {
  if [ -n "${DBAL_SMOKE_TMP:-}" ]; then
    printf '%s' "$DBAL_SMOKE_TMP"
  elif [ -d /dev/shm ] && [ -w /dev/shm ] && command -v findmnt >/dev/null &&
    ! findmnt -no OPTIONS /dev/shm | grep -qw noexec &&
    [ "$(df -Pk /dev/shm | awk 'NR == 2 { print $4 }')" -gt 2097152 ]; then
    printf '/dev/shm'
  else
    printf '%s' "${TMPDIR:-/tmp}"
  fi
}
if [ -n "${DBAL_SMOKE_DIR:-}" ]; then
  WORK=$DBAL_SMOKE_DIR
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d "$(tmp_base)/dbal-image-smoke.XXXXXX")
fi
# The image's user must be able to reach the files (mktemp makes a 0700 folder).
chmod 0755 "$WORK"
export npm_config_prefer_offline=true npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false

log() { printf '[image-smoke +%ss] %s\n' "$SECONDS" "$*" >&2; }
fail() {
  log "FAILED: $*"
  if [ -f "$WORK/daemon.log" ]; then
    log "daemon output:"
    sed 's/^/[image-smoke]   /' "$WORK/daemon.log" >&2
  fi
  exit 1
}

DAEMON_PID=""
cleanup() {
  local rc=$?
  if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then kill -KILL "$DAEMON_PID" 2>/dev/null || true; fi
  if [ "${DBAL_SMOKE_KEEP:-0}" != "1" ] && [ -z "${DBAL_SMOKE_DIR:-}" ]; then
    rm -rf "$WORK"
    log "removed $WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT

# ---- The Dockerfile's instructions, as shell functions --------------------------------------
STAGE=""
declare -A STAGE_ENV=()
IMAGE_USER=""
CWD=""

# FROM <stage>: a new, empty root file system for the stage.
FROM() {
  STAGE=$1
  mkdir -p "$WORK/$STAGE"
  CWD="$WORK/$STAGE"
  IMAGE_USER=""
  log "stage $STAGE"
}

# A path of the stage's file system.
in_stage() { case "$1" in /*) printf '%s%s' "$WORK/$STAGE" "$1" ;; *) printf '%s/%s' "$CWD" "$1" ;; esac; }

WORKDIR() {
  CWD="$WORK/$STAGE$1"
  mkdir -p "$CWD"
}

ENV() {
  local kv
  for kv in "$@"; do STAGE_ENV[$STAGE]+="$kv "; done
}

# COPY [--from=<stage>] <src>... <dest>: files from the repository (or the other stage's folder).
# A folder source copies its contents; several sources or a dest ending in / go into that folder.
COPY() {
  local from=""
  if [[ $1 == --from=* ]]; then
    from=${1#--from=}
    shift
  fi
  local dest=${!#}
  local n=$(($# - 1))
  local sources=("${@:1:$n}")
  local target
  target=$(in_stage "$dest")
  local into_dir=0
  if [ "$n" -gt 1 ] || [[ $dest == */ ]]; then into_dir=1; fi
  local s src
  for s in "${sources[@]}"; do
    if [ -n "$from" ]; then src="$WORK/$from$s"; else src="$ROOT/$s"; fi
    [ -e "$src" ] || fail "COPY: $s does not exist"
    if [ -d "$src" ]; then
      mkdir -p "$target"
      cp -R "$src/." "$target/"
    elif [ "$into_dir" = 1 ]; then
      mkdir -p "$target"
      cp "$src" "$target/"
    else
      mkdir -p "$(dirname "$target")"
      cp "$src" "$target"
    fi
  done
}

# RUN <npm command>: in the stage's working folder, with the stage's ENV.
RUN() {
  log "RUN $* (in $STAGE)"
  local t0=$SECONDS
  (cd "$CWD" && env ${STAGE_ENV[$STAGE]:-} "$@") || fail "RUN $*"
  log "RUN $1 $2: $((SECONDS - t0)) s"
}

USER() { IMAGE_USER=$1; }

# ---- stages (keep in step with deploy/Dockerfile) -------------------------------------------
FROM build
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json tsconfig.client.json ./
COPY src ./src
COPY layers ./layers
COPY app ./app
COPY bin ./bin
COPY scripts/build.mjs ./scripts/build.mjs
RUN npm run build

FROM runtime
ENV NODE_ENV=production DBAL_COMPILED=1 NODE_OPTIONS=--max-semi-space-size=4
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund
COPY --from=build /build/dist ./dist
COPY bin ./bin
COPY config/entities ./config/entities
COPY config/production.yaml /etc/dbal/config.yaml
COPY config/acl_rules.yaml /etc/dbal/acl_rules.yaml
# (the Dockerfile's groupadd/useradd + `install -d -o 10001 -g 10001 -m 0700 /var/log/dbal`:)
mkdir -p "$(in_stage /var/log)"
install -d -m 0700 "$(in_stage /var/log/dbal)"
USER 10001:10001
# ---- end of stages --------------------------------------------------------------------------

RUNTIME="$WORK/runtime"
APP="$RUNTIME/app"
[ -f "$APP/dist/app/main.js" ] || fail "the build stage produced no dist/app/main.js"
[ ! -e "$APP/src" ] || fail "the runtime stage must not contain the TypeScript sources"
[ ! -e "$APP/node_modules/typescript" ] || fail "the runtime stage has dev dependencies (typescript)"
[ ! -e "$APP/node_modules/vitest" ] || fail "the runtime stage has dev dependencies (vitest)"

uid=${IMAGE_USER%%:*}
gid=${IMAGE_USER##*:}
as_user=()
if [ "$(id -u)" = "0" ]; then
  command -v setpriv >/dev/null || fail "setpriv (util-linux) is needed to run as uid $uid"
  chown "$uid:$gid" "$(in_stage /var/log/dbal)"
  # What USER does: numeric ids, no supplementary groups, no capabilities, no new privileges.
  as_user=(setpriv "--reuid=$uid" "--regid=$gid" --clear-groups --inh-caps=-all --no-new-privs --)
  expect_uid=$uid
else
  log "not root: running as $(id -un) instead of uid $uid"
  expect_uid=$(id -u)
fi

# The Dockerfile's ENTRYPOINT + CMD, with /app and /etc/dbal mapped into the runtime folder.
# Absolute paths of the configuration file that point into the image are mapped with the
# daemon's own per-key overrides (as a deployment would).
PORT=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
SERVICE_TOKEN=$(node -e 'console.log(require("crypto").randomBytes(24).toString("hex"))')
daemon_env=(
  ${STAGE_ENV[runtime]}
  "PATH=$PATH"
  "HOME=/nonexistent"
  "DBAL_DB_PASSWORD=${DBAL_DB_PASSWORD:-smoke-placeholder}"
  "DBAL_SERVICE_TOKEN=$SERVICE_TOKEN"
  "DBAL_SERVER__PORT=$PORT"
  "DBAL_SECURITY__ACL__RULES_FILE=$(in_stage /etc/dbal/acl_rules.yaml)"
  "DBAL_SECURITY__AUDIT_LOG_PATH=$(in_stage /var/log/dbal/audit.log)"
  "DBAL_DATABASE__CONNECTION__HOST=${DBAL_SMOKE_DB_HOST:-127.0.0.1}"
  "DBAL_DATABASE__CONNECTION__PORT=${DBAL_SMOKE_DB_PORT:-5432}"
  "DBAL_DATABASE__CONNECTION__USER=${DBAL_SMOKE_DB_USER:-postgres}"
  "DBAL_DATABASE__CONNECTION__DATABASE=${DBAL_SMOKE_DB_NAME:-postgres}"
  "DBAL_DATABASE__CONNECTION__SSL_MODE=disable"
  "DBAL_DATABASE__POOL_SIZE=2"
)
CONFIG="--config=$(in_stage /etc/dbal/config.yaml)"

if [ "${DBAL_SMOKE_MIGRATE:-0}" = "1" ]; then
  log "migrate"
  (cd "$APP" && env -i "${daemon_env[@]}" "${as_user[@]}" node "$APP/bin/dbal-daemon.mjs" migrate "$CONFIG") >"$WORK/migrate.log" 2>&1 ||
    { cat "$WORK/migrate.log" >&2; fail "dbal-daemon migrate"; }
  grep -q '^migrated: ' "$WORK/migrate.log" || fail "migrate printed no 'migrated:' line"
fi

log "starting the daemon on port $PORT as uid $expect_uid"
cd "$APP"
env -i "${daemon_env[@]}" "${as_user[@]}" node "$APP/bin/dbal-daemon.mjs" serve "$CONFIG" >"$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!

# GET url until it answers `status` (bounded; gives up at once when the daemon has exited).
wait_http() {
  node - "$1" "$2" "$DAEMON_PID" "${3:-30000}" <<'JS' || fail "GET $1 did not answer $2"
const [url, status, pid, ms] = process.argv.slice(2)
const deadline = Date.now() + Number(ms)
const alive = () => { try { process.kill(Number(pid), 0); return true } catch { return false } }
const attempt = async () => {
  for (;;) {
    if (!alive()) { console.error(`the daemon exited`); process.exit(1) }
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(3000) })
      const body = await r.text()
      if (r.status === Number(status)) { console.log(body); return }
      if (Date.now() > deadline) { console.error(`${url}: ${r.status} ${body}`); process.exit(1) }
    } catch (e) {
      if (Date.now() > deadline) { console.error(`${url}: ${e.message}`); process.exit(1) }
    }
    await new Promise((r) => setTimeout(r, 100))
  }
}
attempt()
JS
}

base="http://127.0.0.1:$PORT"
wait_http "$base/livez" 200 >/dev/null
log "/livez: 200"

# The Dockerfile's HEALTHCHECK command, run as the image would (same user, same environment).
healthcheck=$(node -e '
const text = require("fs").readFileSync(process.argv[1], "utf8").replace(/\\\n/g, " ")
const m = /^HEALTHCHECK\b.*?\bCMD\s+(\[.*\])\s*$/m.exec(text)
if (!m) process.exit(1)
for (const a of JSON.parse(m[1])) console.log(Buffer.from(a).toString("base64"))
' "$DOCKERFILE") || fail "no HEALTHCHECK CMD [...] in the Dockerfile"
hc=()
# Its paths into the image mapped as for ENTRYPOINT + CMD: /app, and --config into the stage.
while IFS= read -r line; do
  arg=$(printf '%s' "$line" | base64 -d)
  case "$arg" in
    --config=/etc/dbal/config.yaml) arg=$CONFIG ;;
    /app/*) arg="$APP/${arg#/app/}" ;;
  esac
  hc+=("$arg")
done <<<"$healthcheck"
(cd "$APP" && env -i "${daemon_env[@]}" "${as_user[@]}" "${hc[@]}") || fail "the Dockerfile's HEALTHCHECK failed"
log "HEALTHCHECK: ok"

wait_http "$base/readyz" 200 >/dev/null
log "/readyz: 200"
health=$(wait_http "$base/health" 200)
printf '%s' "$health" | grep -q '"status":"healthy"' || fail "/health: $health"
log "/health: $health"

running_uid=$(awk '/^Uid:/ { print $2 }' "/proc/$DAEMON_PID/status")
[ "$running_uid" = "$expect_uid" ] || fail "the daemon runs as uid $running_uid, expected $expect_uid"
log "runs as uid $running_uid"

# docker stop / Kubernetes: SIGTERM, then the drain, then exit 0.
# Bounded: server.shutdown_grace (10 s in production.yaml) + the close handshake + margin.
kill -TERM "$DAEMON_PID"
timeout 30 tail --pid="$DAEMON_PID" -f /dev/null || fail "still running 30 s after SIGTERM"
set +e
wait "$DAEMON_PID"
code=$?
set -e
DAEMON_PID=""
[ "$code" = "0" ] || fail "exit code $code after SIGTERM (expected 0)"
grep -q 'draining' "$WORK/daemon.log" || fail "no 'draining' line after SIGTERM"
log "SIGTERM: drained, exit 0"
echo "image-smoke: OK"
