# Shared helpers for the demo, the test suite and the benchmark: install
# packages, build and install the extension, and run a throwaway
# PostgreSQL 15 as an unprivileged user (PostgreSQL refuses to run as root).
# Sourced, not executed.

PG_BIN=/usr/lib/postgresql/15/bin
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PACKAGES="postgresql-15 postgresql-server-dev-15 libssl-dev perl libipc-run-perl make gcc
  libpq-dev libmicrohttpd-dev pkg-config nginx-light wrk curl clang libclang-rt-14-dev
  caddy haproxy pgbouncer prometheus"

# Run a command as root: directly when we are root, else through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# The unprivileged user that owns the build copy and runs the server.
run_user() {
  if [ "$(id -u)" -eq 0 ]; then echo postgres; else id -un; fi
}

# Run a command as the unprivileged user, keeping the environment we set.
as_user() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- env PATH="$PATH" "$@"
  else
    "$@"
  fi
}

# Install the Debian packages the project needs (no-op when present).
ensure_packages() {
  local missing=()
  for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  # Debian's postgresql-common starts a cluster on install; we never use it.
  export PATH="$PG_BIN:$PATH"
}

# Copy the repository into a fresh work directory owned by the run user,
# build it there and install it into the server's directories.
build_and_install() {
  WORK_DIR=$(mktemp -d /tmp/athena_keys.XXXXXX)
  cp -a "$REPO_ROOT/." "$WORK_DIR/src"
  rm -rf "$WORK_DIR/src/.git"
  chown -R "$(run_user)" "$WORK_DIR"
  chmod 755 "$WORK_DIR"
  echo "== building in $WORK_DIR/src"
  as_user make -s -C "$WORK_DIR/src" clean >/dev/null
  as_user make -s -C "$WORK_DIR/src" >/dev/null
  as_root make -s -C "$WORK_DIR/src" install >/dev/null
}

# Start a throwaway server: start_server NAME PORT [extra postgresql.conf lines]
# Sets PGHOST, PGPORT, PGUSER, PGDATABASE for the callers' psql.
start_server() {
  local name=$1 port=$2 extra=${3:-}
  SERVER_DIR="$WORK_DIR/$name"
  as_user mkdir -p "$SERVER_DIR/socket"
  as_user "$PG_BIN/initdb" -D "$SERVER_DIR/data" -U postgres -A trust --no-sync >/dev/null
  as_user bash -c "cat >> '$SERVER_DIR/data/postgresql.conf'" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$SERVER_DIR/socket'
max_connections = 60
shared_buffers = 256MB
fsync = on
$extra
CONF
  as_user "$PG_BIN/pg_ctl" -D "$SERVER_DIR/data" -l "$SERVER_DIR/server.log" -w start >/dev/null
  export PGHOST="$SERVER_DIR/socket" PGPORT=$port PGUSER=postgres PGDATABASE=postgres
  SERVERS_STARTED="${SERVERS_STARTED:-} $SERVER_DIR/data"
}

# Stop every server we started (used from an EXIT trap).
stop_servers() {
  local d
  for d in ${SERVERS_STARTED:-}; do
    as_user "$PG_BIN/pg_ctl" -D "$d" -m fast -w stop >/dev/null 2>&1 || true
  done
}
