#!/usr/bin/env bash
# bench/scale/vacuum_ab.sh: does a VACUUM of jr_jobs during a big drain keep the claim rate up?
# Issue 18's scale goal: a drain of a big queue must hold >= 90% of a small drain's rate; the
# claim slows as it passes the dead index entries its own earlier claims left at the head of
# the available-jobs index (docs/performance.md, "Where the time goes", point 7). Autovacuum
# wakes once a minute, so within a drain nothing removes them.
#
# A/B, interleaved (A B A B ...), on one throwaway cluster (unix socket), the same preparation
# for both: TRUNCATE, bulk enqueue N no-op echo jobs (runner enqueue --payload-file, COPY),
# VACUUM ANALYZE, CHECKPOINT. The clock runs from the runner's start (--isolation none) to the
# first probe that finds jr_jobs empty (probed every 50 ms). A runs with the runner's vacuum
# service off (RUNNER_VACUUM_DEAD_ROWS=0). B, with MODE=service (the default), runs the
# runner's vacuum service at its default threshold, and with MODE=external the service stays
# off and the script runs `VACUUM jr_jobs` from a connection of its own every EVERY seconds
# (the experiment that led to the service). Prints each round (B's vacuums, and with the
# service the longest one) and the medians of both. Needs the release build (build/release)
# and PostgreSQL 15's binaries.
# Usage (as root): N=300000 ROUNDS=3 [MODE=service|external EVERY=2] bash bench/scale/vacuum_ab.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-300000}
ROUNDS=${ROUNDS:-3}
EVERY=${EVERY:-2}
MODE=${MODE:-service}
case "$MODE" in service | external) ;; *) echo "MODE must be service or external" >&2; exit 2 ;; esac
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
RUNNER=build/release/runner
ECHO_SO=build/release/plugins/libjr_echo.so
[ -x "$RUNNER" ] && [ -f "$ECHO_SO" ] || { echo "build the release preset first" >&2; exit 2; }

D=$(mktemp -d /tmp/jr-vacuum-ab.XXXXXX)
chown postgres "$D"
as_pg() { su postgres -s /bin/bash -c "$*"; }
stop() { as_pg "$PGBIN/pg_ctl -D $D/pg stop -m immediate" >/dev/null 2>&1 || true; rm -rf "$D"; }
trap stop EXIT
as_pg "$PGBIN/initdb -D $D/pg -U postgres -A trust --no-sync" >/dev/null
as_pg "$PGBIN/pg_ctl -D $D/pg -w -l $D/pg.log -o \"-k $D -p 5499 -c listen_addresses=''\" start" \
  >/dev/null
P=(psql -qtAX -h "$D" -p 5499 -U postgres)
"${P[@]}" -c "CREATE DATABASE jr" postgres
export DATABASE_URL="postgresql://postgres@/jr?host=$D&port=5499"
"$RUNNER" migrate >/dev/null 2>&1
mkdir -p "$D/plugins"
cp "$ECHO_SO" "$D/plugins/"
chmod 755 "$D/plugins"
awk -v n="$N" 'BEGIN { for (i = 0; i < n; i++) print "{}" }' >"$D/payload.jsonl"

now_ms() { date +%s%3N; }
# One drain; prints its jobs/s and the number of vacuums it ran.
drain() {
  local mode=$1
  "${P[@]}" -c "TRUNCATE jr_jobs, jr_jobs_done, jr_webhook_deliveries" jr
  "$RUNNER" enqueue echo --payload-file "$D/payload.jsonl" >/dev/null 2>&1
  "${P[@]}" -c "VACUUM ANALYZE" jr
  "${P[@]}" -c "CHECKPOINT" jr
  local t0 last vacuums=0 dead_rows=0
  [ "$mode" = service ] && dead_rows=50000
  t0=$(now_ms)
  last=$t0
  RUNNER_VACUUM_DEAD_ROWS=$dead_rows "$RUNNER" --plugins "$D/plugins" --isolation none \
    --log-level info >/dev/null 2>"$D/runner.log" &
  local pid=$!
  while [ "$("${P[@]}" -c 'SELECT count(*) FROM (SELECT 1 FROM jr_jobs LIMIT 1) x' jr)" != "0" ]; do
    if [ "$mode" = external ] && [ $(($(now_ms) - last)) -ge $((EVERY * 1000)) ]; then
      "${P[@]}" -c "VACUUM jr_jobs" jr
      last=$(now_ms)
      vacuums=$((vacuums + 1))
    fi
    sleep 0.05
  done
  local t1
  t1=$(now_ms)
  kill -TERM "$pid"
  wait "$pid" || true
  local longest=""
  if [ "$mode" = service ]; then
    vacuums=$(grep -c '"vacuum: jr_jobs vacuumed"' "$D/runner.log" || true)
    longest=$(grep '"vacuum: jr_jobs vacuumed"' "$D/runner.log" | sed -n 's/.*"ms":\([0-9]*\).*/\1/p' |
      sort -n | tail -1 || true)
    [ -n "$longest" ] && longest=", the longest ${longest} ms"
  fi
  echo "$((N * 1000 / (t1 - t0))) $vacuums vacuums$longest"
}

if [ "$MODE" = service ]; then b_what="the runner's vacuum service, default threshold"; else b_what="VACUUM jr_jobs every ${EVERY} s from the script"; fi
echo "vacuum_ab: $N jobs per drain, $ROUNDS rounds of A (no vacuum) and B ($b_what), interleaved"
echo "preparation per drain (both): TRUNCATE; bulk enqueue (COPY); VACUUM ANALYZE; CHECKPOINT; clock from runner start to jr_jobs empty"
echo "machine: $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg); runner $(git rev-parse --short HEAD)"
a=()
b=()
for r in $(seq 1 "$ROUNDS"); do
  read -r rate v < <(drain none)
  a+=("$rate")
  echo "round $r A: $rate jobs/s"
  read -r rate v < <(drain "$MODE")
  b+=("$rate")
  echo "round $r B: $rate jobs/s ($v)"
done
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2)}'; }
ma=$(median "${a[@]}")
mb=$(median "${b[@]}")
echo "median A (no vacuum): $ma jobs/s; median B ($b_what): $mb jobs/s; B/A $(awk -v a="$ma" -v b="$mb" 'BEGIN {printf "%.2f", b / a}')"
echo "load at the end $(cut -d' ' -f1-3 /proc/loadavg)"
