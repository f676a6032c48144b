#!/usr/bin/env bash
# The jobrunner demo: builds a release runner, starts the managed local PostgreSQL and loopback
# servers (HTTP, DNS, WHOIS), runs real jobs of every shipped kind (echo, dataset_parse,
# contest_submit, domain_check, scan) through one runner, prints their results, then stops the
# runner and the servers. PostgreSQL is left running (stop it with `build/release/runner db stop`).
# No internet access needed: every server the jobs talk to is on 127.0.0.1.
# Idempotent: the demo's own rows are reset at every run; safe to run twice.
# Usage: bash scripts/demo.sh   (as root on Debian 12, or a user with sudo for the packages)
# Env: DEMO_SKIP_BUILD=1 skips the package and build steps (uses the existing build/release).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD="$ROOT/build/release"
RUNNER="$BUILD/runner"
SERVERS="$BUILD/tests/demo/demo_servers"
STATE="$BUILD/demo"  # config, logs and pid files of this demo
CONTEST=900          # the demo's contest id
CONTEST_START=$(($(date +%s) - 3600))  # it started an hour ago (Unix time)
T0=$(date +%s)

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
say() { printf '    %s\n' "$*"; }
run() {
  printf '    $ %s\n' "$*"
  "$@"
}
die() {
  printf 'demo: %s\n' "$*" >&2
  exit 1
}
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -P pager=off "$DATABASE_URL" "$@"; }
psql_val() { psql -X -q -At -v ON_ERROR_STOP=1 "$DATABASE_URL" -c "$1"; }
# A plugin's tables are in its own schema, readable by its own role only: talk to them as that
# role (`runner db url --plugin NAME`; the URL holds its password, so it is not printed).
psql_as() {
  local plugin="$1" url
  shift
  url="$("$RUNNER" db url --plugin "$plugin")"
  psql -X -q -v ON_ERROR_STOP=1 -P pager=off "$url" "$@"
}

# --- stopping what we started ----------------------------------------------------------------
# A pid file holds the pid of a process this demo started; it is only signalled while that pid
# still runs the same executable (a stale file from an interrupted run must not kill a stranger).
stop_pidfile() {
  local file="$1" exe="$2" name="$3" pid
  [ -f "$file" ] || return 0
  pid="$(cat "$file")"
  rm -f "$file"
  [ -n "$pid" ] && [ -e "/proc/$pid" ] || return 0
  local running
  running="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
  [ "${running% (deleted)}" = "$(readlink -f "$exe")" ] || return 0
  say "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 150); do
    [ -e "/proc/$pid" ] || return 0
    # A zombie child of this shell counts as gone once reaped by wait below.
    if ! kill -0 "$pid" 2>/dev/null; then return 0; fi
    if [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = "Z" ]; then
      wait "$pid" 2>/dev/null || true
      return 0
    fi
    sleep 0.2
  done
  say "$name did not stop within 30 s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  stop_pidfile "$STATE/runner.pid" "$RUNNER" "the runner"
  stop_pidfile "$STATE/servers.pid" "$SERVERS" "demo_servers"
  [ -n "${DEMO_STORAGE:-}" ] && rm -rf "$DEMO_STORAGE"
  return 0
}

# --- 1. packages and build -------------------------------------------------------------------
if [ "${DEMO_SKIP_BUILD:-0}" != 1 ]; then
  step "Installing the Debian packages (scripts/install-deps.sh)"
  run bash scripts/install-deps.sh
  step "Building the release build (build/release)"
  run cmake --preset release -G Ninja
  # The whole release build, as the README's quick start does (CI builds it too: scripts/test.sh).
  run cmake --build --preset release
fi
[ -x "$RUNNER" ] || die "$RUNNER is missing: run without DEMO_SKIP_BUILD"
[ -x "$SERVERS" ] || die "$SERVERS is missing: run without DEMO_SKIP_BUILD"
T_BUILT=$(date +%s)

mkdir -p "$STATE"
# Leftovers of an interrupted earlier run.
cleanup
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 2. PostgreSQL ---------------------------------------------------------------------------
step "Starting the managed local PostgreSQL"
run "$RUNNER" db start
DATABASE_URL="$("$RUNNER" db url)"
export DATABASE_URL
say "DATABASE_URL=$DATABASE_URL"

# --- 3. loopback servers ---------------------------------------------------------------------
step "Starting the loopback servers (HTTP for scan; DNS + WHOIS for domain_check)"
rm -f "$STATE/ports.env"
printf '    $ %s\n' "demo_servers --site tests/demo/site --zone test ... &"
"$SERVERS" --site "$ROOT/tests/demo/site" --state-dir "$STATE" \
  --zone test --delegated harbor-bakery.test,jobrunner.test \
  --whois-registered parked.test >"$STATE/servers.log" 2>&1 &
echo $! >"$STATE/servers.pid"
for _ in $(seq 1 100); do
  [ -f "$STATE/ports.env" ] && break
  kill -0 "$(cat "$STATE/servers.pid")" 2>/dev/null || break
  sleep 0.1
done
[ -f "$STATE/ports.env" ] || { cat "$STATE/servers.log" >&2; die "demo_servers did not start"; }
# shellcheck disable=SC1091
. "$STATE/ports.env"
sed 's/^/    /' "$STATE/servers.log"
say "zone .test: harbor-bakery.test and jobrunner.test are delegated (NS records); other names"
say "are NXDOMAIN; WHOIS knows parked.test (registered, not delegated). Other TLDs: REFUSED."

# --- 4. the runner ---------------------------------------------------------------------------
# The plugins run sandboxed, as `nobody` when we are root: dataset_parse reads its uploads from a
# directory that user can reach (a checkout under /root is closed to it).
DEMO_STORAGE="$(mktemp -d /tmp/jobrunner-demo-storage.XXXXXX)"
cp -r "$ROOT/plugins/dataset_parse/demo/." "$DEMO_STORAGE/"
chmod -R a+rX "$DEMO_STORAGE"

step "Writing the runner config ($STATE/runner.toml)"
cat >"$STATE/runner.toml" <<EOF
# Written by scripts/demo.sh: every plugin talks only to 127.0.0.1.
[plugins.dataset_parse]
storage_root = "$DEMO_STORAGE"

[plugins.domain_check]
dns_server = "127.0.0.1"
dns_port = $DEMO_DNS_PORT
dns_timeout = 2.0
whois_timeout = 2.0
enable_idle_recheck = false
[plugins.domain_check.whois_servers]
test = "127.0.0.1:$DEMO_WHOIS_PORT"

[plugins.scan]
allow_hosts = ["127.0.0.1:$DEMO_HTTP_PORT"]
request_timeout_ms = 10000
EOF
sed 's/^/    | /' "$STATE/runner.toml"

step "Starting a runner with the shipped plugins"
WORKER_ID="demo-$(date +%s)"
printf '    $ %s\n' "runner --config $STATE/runner.toml --plugins $BUILD/plugins --worker-id $WORKER_ID &"
"$RUNNER" --config "$STATE/runner.toml" --plugins "$BUILD/plugins" --worker-id "$WORKER_ID" \
  >"$STATE/runner.log" 2>&1 &
echo $! >"$STATE/runner.pid"
ok=0
for _ in $(seq 1 300); do
  if [ "$(psql_val "SELECT count(*) FROM jr_workers WHERE id = '$WORKER_ID'" 2>/dev/null)" = 1 ]; then
    ok=1
    break
  fi
  kill -0 "$(cat "$STATE/runner.pid")" 2>/dev/null || break
  sleep 0.1
done
[ "$ok" = 1 ] || { tail -n 30 "$STATE/runner.log" >&2; die "the runner did not start (log: $STATE/runner.log)"; }
say "runner up (log: $STATE/runner.log); it serves these kinds:"
psql_val "SELECT unnest(kinds) FROM jr_workers WHERE id = '$WORKER_ID' ORDER BY 1" | sed 's/^/      /'
say "each plugin runs sandboxed in its own jr-worker processes (the default isolation):"
sed -n 's/.*"msg":"plugin loaded in the sandbox","plugin":"\([a-z_]*\)".*/      \1/p' "$STATE/runner.log"
say "worker processes now: $(pgrep -c -P "$(cat "$STATE/runner.pid")" jr-worker || true)," \
  "as user $(ps -o user= -p "$(pgrep -P "$(cat "$STATE/runner.pid")" jr-worker | head -1)" 2>/dev/null || echo '?')"

# --- 5. the demo's rows ----------------------------------------------------------------------
step "Resetting the demo's rows and registering datasets and a contest (SQL, as each plugin)"
say "each plugin has a database role and schema of its own, and no access to the queue:"
psql_val "SELECT plugin || ': role ' || role_name || ', schema ' || schema_name
          FROM jr_plugin_roles ORDER BY plugin" | sed 's/^/      /'
# Earlier demo runs: remove their rows so this run judges and parses afresh.
psql_as scan -c "DO \$\$ BEGIN  -- scan_jobs is created by the plugin on first use
  IF to_regclass('scan_jobs') IS NOT NULL THEN DELETE FROM scan_jobs WHERE id LIKE 'demo-%'; END IF;
END \$\$"
psql_as domain_check -c "DO \$\$ BEGIN
  IF to_regclass('domains') IS NOT NULL THEN DELETE FROM domains WHERE name LIKE '%.test'; END IF;
END \$\$"
psql_as dataset_parse <<SQL
DELETE FROM names WHERE dataset_id IN ('us-2023', 'fr-2022', 'oops');
DELETE FROM datasets WHERE id IN ('us-2023', 'fr-2022', 'oops');
INSERT INTO datasets (id, country_code, storage_path) VALUES
  ('us-2023', 'US', 'yob2023.txt'),
  ('fr-2022', 'FR', 'nat2022.csv'),
  ('oops',    'US', 'nat2022.csv');   -- the wrong file for the US parser
SQL
psql_as contest_submit <<SQL
DELETE FROM standings WHERE contest_id = $CONTEST;
DELETE FROM submissions WHERE contest_id = $CONTEST OR id LIKE 'demo-%';
DELETE FROM problems WHERE contest_id = $CONTEST;
DELETE FROM contests WHERE id = $CONTEST;
INSERT INTO contests (id, starts_at, ends_at, scoring, penalty_minutes)
VALUES ($CONTEST, to_timestamp($CONTEST_START), now() + interval '4 hours', 'icpc', 20);
INSERT INTO problems (contest_id, id, checker, tolerance, expected, points) VALUES
  ($CONTEST, 'A', 'exact', 0, '42', 1),
  ($CONTEST, 'B', 'case_insensitive', 0, 'Hello World', 1),
  ($CONTEST, 'C', 'numeric', 0.001, '3.14159', 1);
SQL
say "datasets: us-2023 (US yob2023.txt), fr-2022 (FR nat2022.csv), oops (wrong file)"
say "contest $CONTEST (icpc, started an hour ago): A exact '42', B case-insensitive 'Hello World',"
say "C numeric 3.14159 +- 0.001"

# --- 6. jobs ---------------------------------------------------------------------------------
step "Enqueueing jobs of every shipped kind"
SINCE="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
IDS=()
LABELS=()
enqueue() {  # enqueue LABEL KIND PAYLOAD [runner enqueue flags...]
  local label="$1" kind="$2" payload="$3" id
  shift 3
  id="$("$RUNNER" enqueue "$kind" --payload "$payload" "$@")"
  IDS+=("$id")
  LABELS+=("$label")
  printf '    job %-5s %-17s %s %s\n' "$id" "$kind" "$payload" "$*"
}
at() { date -u -d "@$((CONTEST_START + $1 * 60))" +%Y-%m-%dT%H:%M:%SZ; }
sub() {  # sub ID TEAM PROBLEM ANSWER MINUTES-INTO-THE-CONTEST
  printf '{"submission_id":"demo-%s","contest_id":%s,"team_id":"%s","problem_id":"%s","answer":"%s","submitted_at":"%s"}' \
    "$1" "$CONTEST" "$2" "$3" "$4" "$(at "$5")"
}

enqueue echo-ok echo '{"message":"hello from the demo"}'
enqueue echo-retry echo '{"message":"fails once, then succeeds","fail_attempts":1}' --retry-schedule 1
enqueue echo-dlq echo '{"fail":"permanent"}' --max-attempts 3

enqueue dataset-us parse_dataset '{"dataset_id":"us-2023"}'
enqueue dataset-fr parse_dataset '{"dataset_id":"fr-2022"}'
enqueue dataset-oops parse_dataset '{"dataset_id":"oops"}'

Q="contest:submissions:$CONTEST"
enqueue sub-1 contest_submit "$(sub 1 red-pandas A 41 10)" --queue "$Q"
enqueue sub-2 contest_submit "$(sub 2 red-pandas A 42 15)" --queue "$Q"
enqueue sub-3 contest_submit "$(sub 3 red-pandas B 'hello world' 30)" --queue "$Q"
enqueue sub-4 contest_submit "$(sub 4 blue-whales A 42 20)" --queue "$Q"
enqueue sub-5 contest_submit "$(sub 5 blue-whales C 3.1416 40)" --queue "$Q"
enqueue sub-6 contest_submit "$(sub 6 blue-whales B 'Hello' 50)" --queue "$Q"
enqueue sub-7 contest_submit "$(sub 7 green-geckos Z 1 45)" --queue "$Q"
enqueue sub-8 contest_submit "$(sub 8 green-geckos C abc 55)" --queue "$Q"
enqueue sub-2-again contest_submit "$(sub 2 red-pandas A 42 15)" --queue "$Q"  # a redelivery
enqueue sub-bad contest_submit "{\"submission_id\":\"demo-9\",\"contest_id\":$CONTEST,\"team_id\":\"green-geckos\",\"problem_id\":\"A\"}" --queue "$Q"

enqueue domains domain_check '{"domains":["harbor-bakery.test","jobrunner.test","free-name.test","parked.test","-bad-.test","example.com"]}'

WEB="http://127.0.0.1:$DEMO_HTTP_PORT"
enqueue scan-good scan "{\"scan_id\":\"demo-good\",\"url\":\"$WEB/\",\"user_id\":\"u-1\"}" --priority 10
enqueue scan-problems scan "{\"scan_id\":\"demo-problems\",\"url\":\"$WEB/problems.html\"}"
enqueue scan-redirect scan "{\"scan_id\":\"demo-redirect\",\"url\":\"$WEB/old-home\"}"
enqueue scan-ssrf scan '{"scan_id":"demo-metadata","url":"http://169.254.169.254/latest/meta-data/"}'

ID_LIST="$(IFS=,; echo "${IDS[*]}")"
job_id() {  # job_id LABEL
  local i
  for i in "${!LABELS[@]}"; do
    if [ "${LABELS[$i]}" = "$1" ]; then
      echo "${IDS[$i]}"
      return
    fi
  done
}

# --- 7. wait ---------------------------------------------------------------------------------
step "Waiting for the ${#IDS[@]} jobs to finish"
T_ENQ=$(date +%s)
left=${#IDS[@]}
for i in $(seq 1 240); do
  left="$(psql_val "SELECT count(*) FROM jr_jobs WHERE id IN ($ID_LIST)")"
  [ "$left" = 0 ] && break
  if [ $((i % 4)) = 1 ]; then
    say "$left still queued or running: $(psql_val "SELECT string_agg(kind || ' ' || state, ', ' ORDER BY id) FROM jr_jobs WHERE id IN ($ID_LIST)")"
  fi
  sleep 0.5
done
if [ "$left" != 0 ]; then
  say "WARNING: $left jobs did not finish within 2 minutes (runner log: $STATE/runner.log)"
else
  say "all ${#IDS[@]} jobs finished in $(($(date +%s) - T_ENQ)) s"
fi

# --- 8. results ------------------------------------------------------------------------------
step "All demo jobs (jr_jobs_all)"
psql_q -c "SELECT id, kind, queue, state, attempt AS try, left(CASE
             WHEN state <> 'completed' THEN errors -> -1 ->> 'message'
             WHEN kind = 'parse_dataset' THEN format('%s: %s rows', result->>'dataset_id',
                                                     result->'metrics'->>'rows_inserted')
             WHEN kind = 'contest_submit' THEN format('%s %s %s: %s%s', result->>'submission_id',
                                      result->>'team_id', result->>'problem_id', result->>'verdict',
                   CASE WHEN (result->>'redelivered')::boolean THEN ' (redelivered, counted once)' END)
             WHEN kind = 'domain_check' THEN (result->'summary')::text
             WHEN kind = 'scan' THEN format('%s: %s %s findings', result->>'scan_id',
                                   result->>'http_status', jsonb_array_length(result->'findings'))
             ELSE result::text END, 64) AS \"result / last error\"
           FROM jr_jobs_all WHERE id IN ($ID_LIST) ORDER BY id"

step "echo: a job that succeeded on its second attempt"
run "$RUNNER" status "$(job_id echo-retry)"
step "The dead letter queue: permanent failures go straight there, whatever --max-attempts says"
run "$RUNNER" dlq ls --since "$SINCE"

step "dataset_parse: the datasets table and the top US names"
psql_as dataset_parse -c "SELECT id, status, metrics->>'parser' AS parser, metrics->>'rows_inserted' AS inserted,
             metrics->>'rows_skipped' AS skipped, left(error_message, 50) AS error
           FROM datasets WHERE id IN ('us-2023', 'fr-2022', 'oops') ORDER BY id"
psql_as dataset_parse -c "SELECT name, sex, count, rank FROM names
           WHERE dataset_id = 'us-2023' AND rank <= 3 ORDER BY sex, rank"
psql_as dataset_parse -c "SELECT name, sex, count, year FROM names WHERE dataset_id = 'fr-2022'
           ORDER BY count DESC, name LIMIT 4"

step "contest_submit: verdicts and standings of contest $CONTEST (icpc: penalty = minutes + 20 per wrong try)"
psql_as contest_submit -c "SELECT id, team_id AS team, problem_id AS problem, answer, verdict, score,
             (extract(epoch FROM submitted_at) - $CONTEST_START)::int / 60 AS minute,
             left(detail, 40) AS detail
           FROM submissions WHERE contest_id = $CONTEST ORDER BY submitted_at, id"
psql_as contest_submit -c "SELECT rank() OVER (ORDER BY solved DESC, penalty, last_accepted_at) AS rank,
             team_id AS team, solved, penalty
           FROM standings WHERE contest_id = $CONTEST ORDER BY 1, team_id"

step "domain_check: one job, six names (DNS + WHOIS on loopback)"
psql_q -c "SELECT d->>'input' AS input, d->>'status' AS status, d->>'method' AS method,
             d->'details'->>'dns' AS dns, coalesce(d->>'reason', '') AS reason,
             coalesce(d->'details'->>'ns', split_part(d->'details'->>'whois_excerpt', E'\\r', 1),
                      '') AS evidence
           FROM jr_jobs_done j, jsonb_array_elements(j.result->'domains') d
           WHERE j.id = $(job_id domains)"
psql_as domain_check -c "SELECT name, status, method, details->>'latency_ms' AS ms FROM domains
           WHERE name LIKE '%.test' OR name = 'example.com' ORDER BY name"

step "scan: the scan_jobs rows (status, teaser) and the findings of each report"
psql_as scan -c "SELECT id, status, step, progress AS pct, teaser->>'finding_count' AS findings,
             coalesce(error_message, (SELECT string_agg(f->>'id', ', ')
                                      FROM jsonb_array_elements(teaser->'findings') f), '')
               AS \"teaser (first 3 findings) / error\"
           FROM scan_jobs WHERE id LIKE 'demo-%' ORDER BY created_at"
psql_as scan -c "SELECT s.id AS scan, f->>'severity' AS severity, f->>'id' AS finding
           FROM scan_jobs s, jsonb_array_elements(s.result->'findings') WITH ORDINALITY AS x(f, n)
           WHERE s.id LIKE 'demo-%' ORDER BY s.id, n"
psql_as scan -c "SELECT id, result->>'http_status' AS http, result->'metrics'->>'word_count' AS words,
             result->'metrics'->>'redirects' AS redirects,
             (SELECT string_agg(k->>'phrase', ', ') FROM
                (SELECT k FROM jsonb_array_elements(result->'keyphrases') k LIMIT 3) top) AS keyphrases
           FROM scan_jobs WHERE id LIKE 'demo-%' AND status = 'FULL_READY' ORDER BY id"

say "what the scanner asked the demo HTTP server (GET pages, HEAD link checks):"
grep ' http ' "$STATE/servers.log" | sed 's/^demo_servers: http /      /'

# --- 9. stop ---------------------------------------------------------------------------------
step "Stopping the runner and the loopback servers"
cleanup
trap - EXIT
T_END=$(date +%s)
step "Done in $((T_END - T_BUILT)) s after the build ($((T_END - T0)) s in all)"
say "PostgreSQL is still running ($("$RUNNER" db status)); stop it with:"
say "  $RUNNER db stop"
say "Look again at any job:  $RUNNER status ID   (DATABASE_URL=\"$DATABASE_URL\")"
