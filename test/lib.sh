# shellcheck shell=bash
# Shared helpers for the demo, the test suite and the benchmark: install
# packages, build and install the extension, and run a throwaway
# PostgreSQL as an unprivileged user (PostgreSQL refuses to run as root).
# Sourced, not executed.

# The PostgreSQL under test is the one PG_CONFIG names (default: Debian
# 12's 15); every other path is asked of it.  A Debian pg_config lives in
# /usr/lib/postgresql/MAJOR/bin, and its packages are named from MAJOR; any
# other (a private build, e.g. the assertion lane's) brings its own server.
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export PG_CONFIG
case $PG_CONFIG in
  /usr/lib/postgresql/*/bin/pg_config)
    PG_MAJOR=${PG_CONFIG#/usr/lib/postgresql/}; PG_MAJOR=${PG_MAJOR%%/*}
    PG_PACKAGES="postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR" ;;
  *) PG_PACKAGES="" ;;
esac
# Not installed yet on a fresh machine: ensure_packages sets it again.
PG_BIN=$("$PG_CONFIG" --bindir 2>/dev/null || true)
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# TEST_SET=core (the other majors' lanes) builds and runs installcheck, the C
# unit tests and athena-authd's unit tests only, so it needs none of the
# full suite's tools (nginx e2e, wrk load, clang fuzzers).
TEST_SET=${TEST_SET:-full}
PACKAGES="$PG_PACKAGES libssl-dev perl libipc-run-perl make gcc libpq-dev libmicrohttpd-dev pkg-config"
[ "$TEST_SET" = core ] || PACKAGES="$PACKAGES nginx-light wrk curl clang libclang-rt-14-dev
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
    runuser -u postgres -- env PATH="$PATH" PG_CONFIG="$PG_CONFIG" "$@"
  else
    "$@"
  fi
}

# apt-get as root, waiting for another apt run's lock rather than failing.
apt_get() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@"
}

# Install the Debian packages the project needs (no-op when present).
ensure_packages() {
  local missing=()
  for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing: ${missing[*]}"
    apt_get update -qq
    apt_get install -y -qq "${missing[@]}" >/dev/null
    # (Debian's postgresql-common starts a cluster on install; we never use it.)
  fi
  PG_BIN=$("$PG_CONFIG" --bindir) || { echo "no PostgreSQL at PG_CONFIG=$PG_CONFIG"; return 1; }
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
  # PG_CONFIG on the command line: sudo would drop it from the environment.
  as_user make -s -C "$WORK_DIR/src" PG_CONFIG="$PG_CONFIG" clean >/dev/null
  as_user make -s -C "$WORK_DIR/src" PG_CONFIG="$PG_CONFIG" >/dev/null
  # Install exactly this tree's extension: scripts that another tree left
  # in a shared installation (an upgrade path this one lacks) would change
  # what the tests see.
  local ext_dir
  ext_dir=$("$PG_CONFIG" --sharedir)/extension
  as_root rm -f "$ext_dir/athena_keys.control" "$ext_dir"/athena_keys--*.sql
  as_root make -s -C "$WORK_DIR/src" PG_CONFIG="$PG_CONFIG" install >/dev/null
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
