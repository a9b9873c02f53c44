# shellcheck shell=bash
# The one shell library of the project's scripts (sourced, not executed):
# test/run_tests.sh, test/demo.sh, test/run_majors.sh, test/bench/run_bench.sh
# and, through authd/test/e2e_lib.sh, athena-authd's end-to-end and load
# tests.  It installs packages, runs commands as root or as the unprivileged
# user, builds and installs the extension and athena-authd, hands out free
# loopback ports, and starts, stops and restarts throwaway PostgreSQL
# servers as that user (PostgreSQL refuses to run as root), with the roles
# a gateway logs in as.

# Sourced twice (demo.sh sources it and e2e_lib.sh, which sources it too):
# the second time changes nothing.
[ -n "${ATHENA_LIB_LOADED:-}" ] && return 0
ATHENA_LIB_LOADED=1

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
  caddy haproxy pgbouncer prometheus gdb"

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

# make_work_dir [PREFIX]: a fresh temporary directory in WORK_DIR, readable
# by the unprivileged user (its servers live in subdirectories).
make_work_dir() {
  WORK_DIR=$(mktemp -d "/tmp/${1:-athena_keys}.XXXXXX")
  chmod 755 "$WORK_DIR"
}

# Copy the repository into a fresh work directory owned by the run user,
# build it there and install it into the server's directories.
build_and_install() {
  make_work_dir athena_keys
  cp -a "$REPO_ROOT/." "$WORK_DIR/src"
  rm -rf "$WORK_DIR/src/.git"
  chown -R "$(run_user)" "$WORK_DIR"
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

# build_authd [--clean] DIR: build athena-authd in DIR (an authd/ tree), as
# the unprivileged user when it owns DIR (a work copy), else as ourselves
# (a checkout).
build_authd() {
  local clean=0 dir run=()
  if [ "$1" = --clean ]; then clean=1; shift; fi
  dir=$1
  if [ "$(id -u)" -eq 0 ] && [ "$(stat -c %U "$dir")" = "$(run_user)" ]; then run=(as_user); fi
  if [ "$clean" = 1 ]; then "${run[@]}" make -s -C "$dir" clean >/dev/null; fi
  "${run[@]}" make -s -C "$dir" PG_CONFIG="$PG_CONFIG" athena-authd >/dev/null
}

# Print a free loopback TCP port not handed out before
USED_PORTS=""
pick_port() {
  local port
  for _ in $(seq 1 200); do
    port=$((20000 + RANDOM % 12000))  # below the ephemeral range (32768+)
    case " $USED_PORTS " in *" $port "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      USED_PORTS="$USED_PORTS $port"
      echo "$port"
      return 0
    fi
  done
  echo "no free port found" >&2
  return 1
}

# Start a throwaway server in $WORK_DIR/NAME, on 127.0.0.1 and a socket of
# its own: start_server NAME PORT [extra postgresql.conf lines], PORT ""
# for a free one (pick_port).  The extra lines come last, so they override
# the defaults.  Sets SERVER_DIR and PGHOST, PGPORT, PGUSER, PGDATABASE for
# the callers' psql.
start_server() {
  local name=$1 port=${2:-} extra=${3:-}
  [ -n "$port" ] || port=$(pick_port) || return 1
  SERVER_DIR="$WORK_DIR/$name"
  mkdir -p "$SERVER_DIR/socket"
  if [ "$(id -u)" -eq 0 ]; then chown -R "$(run_user)" "$SERVER_DIR"; fi
  as_user "$PG_BIN/initdb" -D "$SERVER_DIR/data" -U postgres -A trust --no-sync >"$SERVER_DIR/initdb.log" 2>&1 ||
    { cat "$SERVER_DIR/initdb.log"; return 1; }
  as_user bash -c "cat >> '$SERVER_DIR/data/postgresql.conf'" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$SERVER_DIR/socket'
max_connections = 60
shared_buffers = 256MB
fsync = on
$extra
CONF
  resume_server "$SERVER_DIR/data" || return 1
  export PGHOST="$SERVER_DIR/socket" PGPORT=$port PGUSER=postgres PGDATABASE=postgres
  SERVERS_STARTED="${SERVERS_STARTED:-} $SERVER_DIR/data"
}

# resume_server DATA: start a server made by start_server again (its log
# is server.log next to DATA)
resume_server() {
  as_user "$PG_BIN/pg_ctl" -D "$1" -l "$(dirname "$1")/server.log" -w start >/dev/null
}

# stop_server DATA: fast shutdown (sessions are terminated) of one server
stop_server() {
  as_user "$PG_BIN/pg_ctl" -D "$1" -m fast -w stop >/dev/null
}

# Stop every server we started (used from an EXIT trap).
stop_servers() {
  local d
  for d in ${SERVERS_STARTED:-}; do
    stop_server "$d" 2>/dev/null || true
  done
}

# create_gateway_login ROLE: a LOGIN role that may only authenticate (what
# athena-authd connects as), on the server PGHOST/PGPORT name
create_gateway_login() {
  "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -U postgres -d postgres >/dev/null <<SQL
CREATE ROLE $1 LOGIN;
SELECT athena_keys.athena_grant_gateway_role('$1');
SQL
}
