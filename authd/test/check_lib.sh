# shellcheck shell=bash
# Checks and HTTP helpers shared by athena-authd's end-to-end suites
# (sourced after e2e_lib.sh): Check/Abort/Finish count and report TAP-like
# "ok N - ..." lines; Request fills STATUS, BODY and HEADERS.

PASSED=0
FAILED=0
CHECK_NUMBER=0
STATUS=""
BODY=""
HEADERS=""

# Record one check: Check DESCRIPTION COMMAND...
Check() {
  local description=$1
  shift
  CHECK_NUMBER=$((CHECK_NUMBER + 1))
  if "$@"; then
    PASSED=$((PASSED + 1))
    echo "ok $CHECK_NUMBER - $description"
  else
    FAILED=$((FAILED + 1))
    echo "not ok $CHECK_NUMBER - $description"
    echo "#   got status=$STATUS body=$BODY"
  fi
}

# Stop here: report what happened so far
Abort() {
  CHECK_NUMBER=$((CHECK_NUMBER + 1))
  FAILED=$((FAILED + 1))
  echo "not ok $CHECK_NUMBER - $1"
  Finish
}

# Print logs when something failed, the summary line, and exit
Finish() {
  if [ "$FAILED" -gt 0 ] && [ -n "$E2E_TMP" ]; then
    for log in "$E2E_TMP"/*.log "$E2E_TMP/nginx/error.log"; do
      [ -f "$log" ] && { echo "# --- tail of $log"; tail -n 15 "$log" | sed 's/^/#   /'; }
    done
  fi
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
  exit
}

# Request PORT PATH [curl args...]: sets STATUS, BODY and HEADERS
Request() {
  local port=$1 path=$2
  shift 2
  STATUS=$(curl -s -o "$E2E_TMP/body" -D "$E2E_TMP/headers" -w '%{http_code}' --max-time 10 \
    "$@" "http://127.0.0.1:$port$path")
  BODY=$(cat "$E2E_TMP/body" 2>/dev/null)
  HEADERS=$(tr -d '\r' <"$E2E_TMP/headers" 2>/dev/null)
}

# True when the last response had this status
StatusIs() {
  [ "$STATUS" = "$1" ]
}

# True when the last response had this status and the JSON error message
DeniedWith() {
  [ "$STATUS" = "$1" ] && [ "$BODY" = "{\"status\":\"error\",\"message\":\"$2\"}" ]
}

# True when the last response had this status and exactly this body
# (trailing newlines aside)
BodyIs() {
  [ "$STATUS" = "$1" ] && [ "$BODY" = "$2" ]
}

# True when the last response had this status and a body containing text
BodyContains() {
  [ "$STATUS" = "$1" ] && [[ "$BODY" == *"$2"* ]]
}

# True when the last response carried header "Name: value" (case-insensitive name)
HasHeader() {
  grep -qi "^$1: *$2 *\$" <<<"$HEADERS"
}

# True when the last response had no header of this name
LacksHeader() {
  ! grep -qi "^$1:" <<<"$HEADERS"
}

# WrongSecret KEY: the key with its last secret character changed
WrongSecret() {
  local key=$1
  if [ "${key: -1}" = 0 ]; then echo "${key%?}1"; else echo "${key%?}0"; fi
}

# Create a key; prints "api_key id"
CreateKey() {
  Sql -c "SELECT api_key || ' ' || id FROM athena_keys.athena_create_key($1)"
}

# Retry a request until it answers the wanted status (up to ~10 s)
AwaitStatus() {
  local wanted=$1
  shift
  for _ in $(seq 1 50); do
    Request "$@"
    [ "$STATUS" = "$wanted" ] && return 0
    sleep 0.2
  done
  return 1
}

# Milliseconds since the epoch
NowMs() {
  echo $(($(date +%s%N) / 1000000))
}

