#!/usr/bin/env bash
# The whole test suite, on a fresh Debian 12 machine, as root or as a user
# with sudo: installs packages, builds, installs, starts a throwaway
# PostgreSQL as an unprivileged user, and runs
#   - make installcheck: pg_regress behaviour tests, isolation specs (races),
#     TAP tests (crashes, restarts, replicas) when present
#   - C unit tests and bounded libFuzzer runs of the pure parsers/matchers
#   - the call graph between source files (test/call_graph.sh): no cycles
#   - the learning load check (pgbench, 8 clients)
#   - the rate limit load check (pgbench, 8 clients, on a second server that
#     preloads athena_keys)
#   - the athena-authd sidecar's unit and end-to-end tests (when present):
#     nginx, PgBouncer, Caddy, HAProxy, and Envoy/Traefik contract tests
# and ends with "N passed, N failed".  FUZZ_SECONDS (default 30) bounds
# each fuzzer.  The PostgreSQL is the one PG_CONFIG names (default Debian's
# 15, see lib.sh).  TEST_SET=core runs only the build, installcheck, the C
# unit tests and athena-authd's build and unit tests (the lanes of
# test/run_majors.sh); TEST_PORT (default 54329) is the server's port.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

ensure_packages
build_and_install || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }
trap stop_servers EXIT
start_server suite "${TEST_PORT:-54329}"

passed=0
failed=0
failures=()

# run_suite NAME COMMAND...: run one suite, count it, keep its output.
run_suite() {
  local name=$1; shift
  echo "== $name"
  if "$@"; then
    passed=$((passed + 1)); echo "ok - $name"
  else
    failed=$((failed + 1)); failures+=("$name"); echo "not ok - $name"
  fi
}

SRC="$WORK_DIR/src"
installcheck() {
  as_user make -s -C "$SRC" PG_CONFIG="$PG_CONFIG" installcheck || {
    cat "$SRC"/test/results/regression.diffs "$SRC"/test/isolation/results/regression.diffs 2>/dev/null | head -200
    return 1
  }
}
run_suite "installcheck (regress, isolation, TAP)" installcheck

if [ -d "$SRC/test/unit" ]; then
  run_suite "C unit tests" as_user make -s -C "$SRC/test/unit" test
fi
run_suite "no source file calls one that calls it back" bash "$SRC/test/call_graph.sh" "$SRC/src"
if [ "$TEST_SET" = full ] && [ -d "$SRC/test/fuzz" ]; then
  run_suite "fuzzers (${FUZZ_SECONDS:-30}s each)" \
    as_user make -s -C "$SRC/test/fuzz" run FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
fi

learning_load() {
  local out
  out=$(as_user bash "$SRC/test/learning_load.sh" 2>&1) || { echo "$out"; return 1; }
  echo "$out"
  ! grep -q '^not ok' <<<"$out"
}
# Rate limits need the buckets, so a server that preloads athena_keys: one
# of its own beside the suite's, stopped again afterwards; the suite's
# server stays the one PGHOST/PGPORT name.
rate_limit_load() {
  local out rc suite_host=$PGHOST suite_port=$PGPORT
  start_server ratelimit "" "shared_preload_libraries = 'athena_keys'" || return 1
  out=$(as_user env PGHOST="$PGHOST" PGPORT="$PGPORT" bash "$SRC/test/rate_limit_load.sh" 2>&1)
  rc=$?
  stop_server "$SERVER_DIR/data"
  export PGHOST=$suite_host PGPORT=$suite_port
  echo "$out"
  [ "$rc" -eq 0 ] && ! grep -q '^not ok' <<<"$out"
}
if [ "$TEST_SET" = full ]; then
  run_suite "learning load check" learning_load
  run_suite "rate limit load check" rate_limit_load
fi

if [ -f "$SRC/authd/Makefile" ]; then
  # The build itself first: make test builds only the pure modules.
  run_suite "athena-authd build and unit tests" \
    as_user make -s -C "$SRC/authd" PG_CONFIG="$PG_CONFIG" all test
  if [ "$TEST_SET" = full ]; then
    run_suite "athena-authd end-to-end (nginx)" bash "$SRC/authd/test/e2e.sh"
    run_suite "athena-authd pipelined batches (own verdicts, failures mid-pipeline)" \
      bash "$SRC/authd/test/pipeline.sh"
    run_suite "athena-authd end-to-end (PgBouncer session and transaction pooling)" \
      bash "$SRC/authd/test/pgbouncer.sh"
    run_suite "athena-authd end-to-end (Caddy, HAProxy)" bash "$SRC/authd/test/proxies.sh"
    run_suite "athena-authd contract tests (Envoy ext_authz, Traefik forwardAuth)" \
      bash "$SRC/authd/test/contract.sh"
  fi
fi

echo
[ ${#failures[@]} -gt 0 ] && printf 'failed: %s\n' "${failures[@]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
