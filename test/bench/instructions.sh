# shellcheck shell=bash
# The benchmark's instruction-count mode (sourced by run_bench.sh, issue 17).
#
# tps on a small shared VM moves by more than the differences we want to
# see, so every scenario is also measured in instructions, which do not
# depend on what else the machine does.  The bench server is restarted
# under callgrind (every process of it: --trace-children=yes), with
# collection on only inside PostgresMain (a backend's work) and inside the
# async log writer's main function; one pgbench client (-M prepared -c 1)
# runs a scenario's statement N times on a fresh backend, and the
# backend's file then holds exactly that backend's instructions.  Two runs
# of N_LONG and N_SHORT calls are subtracted, so backend start-up, the
# catalog and plan cache fills and the first call's key cache fill cancel,
# and what is left, divided by N_LONG - N_SHORT, is one call.  For a
# scenario that logs through the async writer, the writer's instructions
# for the same runs (it exits after a second idle, which writes its file)
# are subtracted the same way and shown per call (for async logging, per
# logged row; with a last_used_at stamp due every call, per stamp, which
# the writer coalesces per key and applies once per batch).
#
# Autovacuum and JIT are off, and athena_keys.last_used_interval is a day,
# so that no stamp of last_used_at lands in a run unless the scenario sets
# the interval itself (the stamp scenario: pgopt -c
# athena_keys.last_used_interval=0).

INSTR_LONG=${BENCH_INSTR_LONG:-3500}
INSTR_SHORT=${BENCH_INSTR_SHORT:-500}
INSTR_REPEATS=${BENCH_INSTR_REPEATS:-1}
declare -A INSTR INSTR_WRITER INSTR_ALL

# instr_start DATA: the server of DATA stopped, then started again under
# callgrind; its processes' files go to $INSTR_DIR.
instr_start() {
  local data=$1 i
  INSTR_DATA=$data
  INSTR_DIR="$WORK_DIR/callgrind"
  rm -rf "$INSTR_DIR"; mkdir -p "$INSTR_DIR"; chmod 777 "$INSTR_DIR"
  stop_server "$data"
  as_user bash -c "exec valgrind --tool=callgrind --trace-children=yes --collect-atstart=no \
      --toggle-collect=PostgresMain --toggle-collect=athena_log_writer_main \
      --callgrind-out-file='$INSTR_DIR/callgrind.out.%p' \
      '$PG_BIN/postgres' -D '$data' -c autovacuum=off -c jit=off \
      -c athena_keys.last_used_interval=86400 >'$INSTR_DIR/server.log' 2>&1" &
  for i in $(seq 600); do
    pg_isready -q -h "$PGHOST" -p "$PGPORT" && break
    sleep 0.5
  done
  # One connection through psql, so the next new file is pgbench's backend
  q "SELECT 1" >/dev/null
  sleep 2
}

# instr_stop: the server under callgrind stopped, and started again as usual
instr_stop() {
  stop_server "$INSTR_DATA"
  wait 2>/dev/null || true
  resume_server "$INSTR_DATA"
}

# instr_totals FILE: the instructions a callgrind file collected
instr_totals() {
  awk '/^(totals|summary):/ { t = $2 } END { printf "%.0f\n", t }' "$1"
}

# instr_new_files KIND: the callgrind files not yet seen whose process ran
# KIND (PostgresMain or athena_log_writer_main), each marked seen.
declare -A INSTR_SEEN
instr_new_files() {
  local f
  for f in "$INSTR_DIR"/callgrind.out.*; do
    [ -e "$f" ] || continue
    [ -n "${INSTR_SEEN[$f]:-}" ] && continue
    if grep -q "$1" "$f"; then INSTR_SEEN[$f]=1; echo "$f"; fi
  done
}

# instr_wait KIND COUNT: the COUNT new files of the processes that ran
# KIND, once written (a backend writes its file when it exits; the writer
# a second after it went idle).
instr_wait() {
  local i files=""
  for i in $(seq 120); do
    files+=$(instr_new_files "$1")$'\n'
    if [ "$(grep -c . <<<"$files")" -ge "$2" ]; then grep . <<<"$files"; return 0; fi
    sleep 0.5
  done
  return 1
}

# instr_mark_seen: every file written so far is not one of the next run's
instr_mark_seen() {
  local f
  for f in "$INSTR_DIR"/callgrind.out.*; do [ -e "$f" ] && INSTR_SEEN[$f]=1; done
  return 0
}

# instr_has_writer NAME: whether scenario NAME puts work on the log
# writer: async log rows, or last_used_at stamps (a stamp due every call)
instr_has_writer() {
  [[ ${PGOPT[$1]} == *log_durability=async* || ${PGOPT[$1]} == *last_used_interval=0* ]]
}

# instr_run NAME CALLS: one pgbench run of CALLS calls of scenario NAME on
# a fresh backend; prints the backend's and the writer's instructions.
instr_run() {
  local name=$1 calls=$2 backend=0 writer=0 f
  instr_mark_seen
  # shellcheck disable=SC2086  # VARS is a list of -D options
  PGDATABASE="${DB_OF[$name]}" PGOPTIONS="${PGOPT[$name]}" \
    pgbench -n -M prepared -c 1 -j 1 -t "$calls" ${VARS[$name]} -f "$OUT/${FILE[$name]}.sql" \
    >"$OUT/instr_$name.log" 2>&1 || { echo "pgbench failed for $name (instructions)" >&2; echo "0 0"; return 0; }
  # pgbench's two backends: the one it checks the server with, then the
  # client's (the first costs the same in every run, so it cancels)
  for f in $(instr_wait PostgresMain 2); do backend=$(( backend + $(instr_totals "$f") )); done
  if instr_has_writer "$name"; then
    for f in $(instr_wait athena_log_writer_main 1); do writer=$(( writer + $(instr_totals "$f") )); done
  fi
  echo "$backend $writer"
}

# instr_measure NAME: per-call instructions of scenario NAME (and of the
# writer per logged row) into INSTR / INSTR_WRITER, each repeat's in
# INSTR_ALL.
instr_measure() {
  local name=$1 rep b_long w_long b_short w_short per wper
  INSTR_ALL[$name]=""
  instr_run "$name" 20 >/dev/null      # warm shared buffers and the OS cache
  for rep in $(seq "$INSTR_REPEATS"); do
    read -r b_long w_long < <(instr_run "$name" "$INSTR_LONG")
    read -r b_short w_short < <(instr_run "$name" "$INSTR_SHORT")
    per=$(awk -v a="$b_long" -v b="$b_short" -v n=$(( INSTR_LONG - INSTR_SHORT )) 'BEGIN { printf "%.0f", (a - b) / n }')
    wper=$(awk -v a="$w_long" -v b="$w_short" -v n=$(( INSTR_LONG - INSTR_SHORT )) 'BEGIN { printf "%.0f", (a - b) / n }')
    INSTR_ALL[$name]+="$per "
    INSTR[$name]=$per
    if instr_has_writer "$name"; then INSTR_WRITER[$name]=$wper; fi
  done
}

# instr_fill_free_space DB...: fill the space the free space map offers in
# today's log partition and in bench_plain_log of each DB.  The tps phases
# ran 8 clients, whose inserts extend the tables by many pages at a time,
# and autovacuum then summarized the BRIN ranges of those still-empty pages
# and marked them all-visible: a fresh backend's first rows went into them,
# each paying a summary update and a visibility map clear (10-25k
# instructions a row), so whichever run found such pages measured up to
# 15k a call high (one run put a missing key at 100.5k, the next at 86.2k,
# a malformed key the other way round).  Filled once here, by minimal rows
# from one backend, every measured row goes to the end of the table, as a
# long-lived gateway backend's rows do.
instr_fill_free_space() {
  local db
  for db in "$@"; do
    PGDATABASE=$db q "CREATE EXTENSION IF NOT EXISTS pg_freespacemap;
      DO \$\$
      DECLARE
        part regclass := ('athena_keys.' || athena_keys._auth_log_partition_name(
                            (now() AT TIME ZONE 'UTC')::date))::regclass;
        n bigint;
      BEGIN
        SELECT coalesce(sum(avail), 0) / 40 INTO n FROM pg_freespace(part);
        INSERT INTO athena_keys.api_key_auth_log (authenticated, authorized, enforced, allowed, status)
        SELECT true, true, true, true, 200 FROM generate_series(1, n);
        IF to_regclass('public.bench_plain_log') IS NOT NULL THEN
          SELECT coalesce(sum(avail), 0) / 40 INTO n FROM pg_freespace('public.bench_plain_log');
          INSERT INTO public.bench_plain_log (authenticated, authorized, enforced, allowed, status)
          SELECT true, true, true, true, 200 FROM generate_series(1, n);
        END IF;
      END
      \$\$" >/dev/null
  done
}

# instr_phase NAMES...: the instruction counts of the named scenarios, with
# the server under callgrind for the duration.
instr_phase() {
  local name
  echo "== instructions: callgrind, pgbench -M prepared -c 1, ($INSTR_LONG - $INSTR_SHORT calls) / $(( INSTR_LONG - INSTR_SHORT )) per scenario, $INSTR_REPEATS repeat(s)"
  # shellcheck disable=SC2046  # one word per database
  instr_fill_free_space $(for name in "$@"; do echo "${DB_OF[$name]}"; done | sort -u)
  instr_start "$SERVER_DIR/data"
  for name in "$@"; do
    instr_measure "$name"
    printf '   %-44s %9s instr/call%s  (repeats: %s)\n' "${LABEL[$name]}" "${INSTR[$name]}" \
      "${INSTR_WRITER[$name]:+, writer ${INSTR_WRITER[$name]}/call}" "${INSTR_ALL[$name]}"
  done
  instr_stop
}

# human_instr N: 66712 -> 66.7k
human_instr() {
  awk -v n="$1" 'BEGIN { if (n == "" || n == "-") print "-"; else printf "%.1fk", n / 1000 }'
}

# instr_target LABEL VALUE BASE le|within LIMIT: one line of the target
# table; with BASE the value is a ratio to it (le: at most LIMIT; within:
# |ratio - 1| at most LIMIT), without it an absolute count at most LIMIT.
instr_target() {
  awk -v label="$1" -v v="$2" -v b="$3" -v op="$4" -v lim="$5" 'BEGIN {
    if (v == "" || (b == "" && op != "le")) { printf "   %-48s %s\n", label, "n/a"; exit }
    if (b == "") { ok = v <= lim; printf "   %-48s %9.1fk   <= %.1fk   %s\n", label, v / 1000, lim / 1000, ok ? "PASS" : "MISS"; exit }
    if (b <= 0) { printf "   %-48s %s\n", label, "n/a"; exit }
    r = v / b
    if (op == "le") { ok = r <= lim; want = sprintf("<= %.2f x", lim) }
    else { ok = r >= 1 - lim && r <= 1 + lim; want = sprintf("1 +- %.2f", lim) }
    printf "   %-48s %9.1fk   %5.2f x   %-10s %s\n", label, v / 1000, r, want, ok ? "PASS" : "MISS" }'
}
