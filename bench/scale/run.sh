#!/usr/bin/env bash
# Scale test (issue 20): 1, 2, 4, 8, 16 runner processes on one PostgreSQL, no-op echo jobs.
# For each step: saturation throughput (a backlog of JOBS jobs, drained by all runners),
# p99 enqueue-to-start latency at a paced rate below saturation (PACED jobs enqueued one per
# statement, every PACE_MS), and the server's connections while the runners work.
# Starts its own throwaway managed cluster (RUNNER_DATA_DIR in a temp dir); prints a table and
# writes bench/scale/results.tsv; bench/scale/plot.py turns that into docs/scaling.svg, and
# bench/scale/png.sh renders that as docs/scaling.png.
# Usage: bash bench/scale/run.sh [RUNNER (default build/release/runner)]
# Env: STEPS ("1 2 4 8 16"), JOBS (20000), PACED (300), PACE_MS (20), CONCURRENCY (8),
#      ISOLATION (none: the database is under test, not the sandbox).
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNNER=$(realpath "${1:-build/release/runner}")
PLUGINS=$(dirname "$RUNNER")/plugins
STEPS=${STEPS:-"1 2 4 8 16"}
JOBS=${JOBS:-20000}
PACED=${PACED:-300}
PACE_MS=${PACE_MS:-20}
CONC=${CONCURRENCY:-8}
ISOLATION=${ISOLATION:-none}
OUT=bench/scale/results.tsv
TMP=$(mktemp -d /tmp/jr-scale-XXXXXX)
chmod 0755 "$TMP"
export RUNNER_DATA_DIR=$TMP
mkdir -p "$TMP/plugins"
cp "$PLUGINS/libjr_echo.so" "$TMP/plugins/"
PIDS=()
stop_runners() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}
cleanup() {
  stop_runners
  "$RUNNER" db stop >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT

"$RUNNER" migrate >/dev/null 2>&1
SU=$("$RUNNER" db url --superuser)
sql() { psql "$SU" -XAtq -c "$1"; }
awk -v n="$JOBS" 'BEGIN { for (i = 0; i < n; i++) print "{}" }' >"$TMP/jobs.jsonl"
{
  for _ in $(seq 1 "$PACED"); do
    echo "SELECT jr_enqueue('echo', '{}'::jsonb, '{}'::jsonb);"
    echo "SELECT pg_sleep($PACE_MS / 1000.0);"
  done
} >"$TMP/paced.sql"

printf 'runners\tjobs_per_s\tp50_ms\tp99_ms\tconnections\trunner_conns\n' >"$OUT"
for n in $STEPS; do
  for i in $(seq 1 "$n"); do
    "$RUNNER" --plugins "$TMP/plugins" --kinds echo --concurrency "$CONC" \
      --isolation "$ISOLATION" --worker-id "scale-$n-$i" >"$TMP/runner-$n-$i.log" 2>&1 &
    PIDS+=($!)
  done
  # Ready when every runner has registered.
  for _ in $(seq 1 600); do
    live=$(sql "SELECT count(*) FROM jr_workers WHERE id LIKE 'scale-$n-%'" 2>/dev/null || echo 0)
    [ "$live" -ge "$n" ] && break
    sleep 0.1
  done
  sleep 1
  # Saturation: a backlog drained by every runner.
  first=$(sql "SELECT coalesce(max(id), 0) FROM jr_jobs_all")
  "$RUNNER" enqueue echo --payload-file "$TMP/jobs.jsonl" >/dev/null
  conns=0
  for _ in $(seq 1 3000); do
    c=$(sql "SELECT count(*) FROM pg_stat_activity WHERE datname = 'jobrunner' AND usename = 'jobrunner'")
    [ "$c" -gt "$conns" ] && conns=$c
    done_n=$(sql "SELECT count(*) FROM jr_jobs_done WHERE id > $first")
    [ "$done_n" -ge "$JOBS" ] && break
    sleep 0.2
  done
  rate=$(sql "SELECT round(count(*) / extract(epoch FROM max(finished_at) - min(started_at))::numeric)
              FROM jr_jobs_done WHERE id > $first")
  # Latency below saturation: one job per statement every PACE_MS ms.
  first=$(sql "SELECT coalesce(max(id), 0) FROM jr_jobs_all")
  psql "$SU" -XAtq -f "$TMP/paced.sql" >/dev/null
  for _ in $(seq 1 300); do
    [ "$(sql "SELECT count(*) FROM jr_jobs_done WHERE id > $first")" -ge "$PACED" ] && break
    sleep 0.1
  done
  read -r p50 p99 < <(sql "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
      round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1)
      FROM (SELECT extract(epoch FROM started_at - created_at) * 1000 AS ms
            FROM jr_jobs_done WHERE id > $first) s" | tr '|' ' ')
  per=$(( conns / n ))
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$rate" "$p50" "$p99" "$conns" "$per" >>"$OUT"
  printf 'runners %-3s  %8s jobs/s  p50 %7s ms  p99 %7s ms  server connections %4s (%s per runner)\n' \
    "$n" "$rate" "$p50" "$p99" "$conns" "$per"
  stop_runners
done
echo "results: $OUT"
