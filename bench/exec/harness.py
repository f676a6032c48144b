#!/usr/bin/python3
"""bench/exec/harness.py: started by bench/exec/run (which makes the PostgreSQL and redis-server
it uses). Runs the no-op job through each system in interleaved rounds with the same preparation
and the same clock, asserts and prints the rules, then the tables.

Systems (BENCH_SYSTEMS, comma-separated; the first is the reference of the ratios):
  exec       runner + plugins/exec, kind `noop` -> warm Python handler (exec_handler.py) calling
             tasks.noop(); sandboxed (the default isolation), `--concurrency C`, `workers = C`
  native     runner + libjr_echo.so, kind `echo`, payload {} (the echo plugin's no-op fast path);
             sandboxed, `--concurrency C`
  rq         C x `rq worker` (RQ 1.13's default Worker: forks a work horse per job; 1.13 has no
             `rq worker-pool`), q.enqueue(tasks.noop)
  celery     `celery worker -c C -P prefork` (one main process + C pool processes), Redis broker
             and Redis result backend, tasks.noop registered as a task
  rq_simple  C x `rq worker -w rq.worker.SimpleWorker` (RQ's worker that runs jobs in its own
             process, no fork: the closest RQ has to a warm handler)

Standard library only, plus redis-py (the client RQ and Celery use; installed with python3-rq).
Also runs as `harness.py enqueue-rq N FILE` / `enqueue-celery N FILE` (the peers' bulk enqueue,
in a process of its own like `runner enqueue`; job ids to FILE).
"""

import json
import os
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3"
RQ_QUEUE = "bench"


def env_int(name, default):
    v = os.environ.get(name)
    return int(v) if v else default


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# --- enqueue subcommands (separate processes) --------------------------------------------------

def enqueue_rq(n, path):
    import redis
    from rq import Queue

    sys.path.insert(0, HERE)
    import tasks

    conn = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    q = Queue(RQ_QUEUE, connection=conn)
    ids = []
    for i in range(0, n, 1000):  # enqueue_many: one pipeline (MULTI/EXEC) per chunk
        chunk = [Queue.prepare_data(tasks.noop) for _ in range(min(1000, n - i))]
        ids += [j.id for j in q.enqueue_many(chunk)]
    with open(path, "w") as f:
        f.write("\n".join(ids) + "\n")


def enqueue_celery(n, path):
    sys.path.insert(0, HERE)
    import celery_app

    ids = [celery_app.noop.apply_async().id for _ in range(n)]
    with open(path, "w") as f:
        f.write("\n".join(ids) + "\n")


# --- processes and CPU ---------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree(pids):
    """Every live descendant of `pids`, them included (host pid numbers)."""
    out = list(pids)
    i = 0
    while i < len(out):
        p = out[i]
        i += 1
        try:
            for t in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, t)) as f:
                    out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def cpu_seconds(pids):
    """utime+stime of every live process in the trees of `pids`, plus cutime+cstime (what their
    reaped children used: RQ's work horses), in seconds."""
    total = 0
    for p in tree(pids):
        try:
            with open("/proc/%d/stat" % p) as f:
                rest = f.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in rest[11:15])
        except (OSError, IndexError, ValueError):
            pass
    return total / CLK_TCK


def cpu_by_process(pids, classify):
    """cpu_seconds per class of process (classify(pid, is_root) -> name), over the same trees."""
    out = {}
    roots = set(pids)
    for p in tree(pids):
        try:
            with open("/proc/%d/stat" % p) as f:
                rest = f.read().rsplit(")", 1)[1].split()
            k = classify(p, p in roots)
            out[k] = out.get(k, 0) + sum(int(x) for x in rest[11:15]) / CLK_TCK
        except (OSError, IndexError, ValueError):
            pass
    return out


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class Psql:
    """One long-lived psql session (the harness's probe and bookkeeping connection)."""

    def __init__(self, url, errlog):
        self.p = subprocess.Popen(["psql", "-XAtq", url], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=errlog, text=True, bufsize=1)

    def q(self, sql):
        self.p.stdin.write(sql.strip().rstrip(";") + ";\n\\echo __EOQ__\n")
        self.p.stdin.flush()
        lines = []
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise RuntimeError("psql exited (query: %s)" % sql)
            line = line.rstrip("\n")
            if line == "__EOQ__":
                return lines
            lines.append(line)

    def one(self, sql):
        r = self.q(sql)
        if not r:
            raise RuntimeError("no result from: %s" % sql)
        return r[0]

    def close(self):
        self.p.stdin.close()
        self.p.wait(10)


# --- the systems -------------------------------------------------------------------------------

class System:
    name = ""
    label = ""

    def __init__(self, ctx):
        self.ctx = ctx
        self.procs = []
        self.logs = []

    def spawn(self, argv, tag, **kw):
        path = os.path.join(self.ctx["tmp"], "%s-%s.log" % (self.name, tag))
        f = open(path, "ab")
        if path not in self.logs:
            self.logs.append(path)
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, start_new_session=True, **kw)
        f.close()
        self.procs.append(p)
        self.note_groups()
        return p

    def note_groups(self):
        # The live process groups, for run's cleanup should the harness itself be killed.
        with open(os.path.join(self.ctx["tmp"], "pgids"), "w") as g:
            g.write("".join("%d\n" % p.pid for p in self.procs))

    def alive(self):
        return all(p.poll() is None for p in self.procs)

    def log_tail(self):
        out = []
        for path in self.logs:
            with open(path, "rb") as f:
                data = f.read()[-3000:].decode(errors="replace")
            out.append("--- %s\n%s" % (path, data))
        return "\n".join(out)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.procs = []
        self.note_groups()

    def dispatchers(self):
        """The processes that take jobs from the queue: stopped while the batch is enqueued."""
        return [p.pid for p in self.procs]

    def roots(self):
        return [p.pid for p in self.procs]

    def classify(self, pid, is_root):
        return "all"


class RunnerSystem(System):
    kind = ""
    plugin = ""

    def prepare(self):
        pg = self.ctx["pg"]
        left = pg.one("SELECT count(*) FROM jr_jobs")
        assert left == "0", "jr_jobs not empty before %s: %s" % (self.name, left)
        pg.q("TRUNCATE jr_jobs_done")

    def config(self):
        return None

    def extra_args(self):
        return []

    def start(self):
        d = os.path.join(self.ctx["tmp"], "plugins-" + self.name)
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o755)
        dst = os.path.join(d, os.path.basename(self.plugin))
        if not os.path.exists(dst):
            with open(self.plugin, "rb") as s, open(dst, "wb") as t:
                t.write(s.read())
            os.chmod(dst, 0o755)
        argv = [self.ctx["runner"], "--database", self.ctx["pg_url"], "--plugins", d,
                "--concurrency", str(self.ctx["concurrency"]), "--kinds", self.kind]
        argv += self.extra_args()
        cfg = self.config()
        if cfg is not None:
            path = os.path.join(self.ctx["tmp"], "runner-%s.toml" % self.name)
            with open(path, "w") as f:
                f.write(cfg)
            os.chmod(path, 0o644)
            argv += ["--config", path]
        self.argv = argv
        self.spawn(argv, "runner")

    def enqueue(self, n):
        path = os.path.join(self.ctx["tmp"], "payloads-%d.jsonl" % n)
        if not os.path.exists(path):
            with open(path, "w") as f:
                f.write("{}\n" * n)
        r = subprocess.run([self.ctx["runner"], "--database", self.ctx["pg_url"], "enqueue",
                            self.kind, "--payload-file", path], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("runner enqueue failed: %s" % r.stderr)
        ids = [int(x) for x in r.stdout.split()]
        assert len(ids) == n, "runner enqueue printed %d ids for %d jobs" % (len(ids), n)
        return {"n": n, "lo": min(ids), "hi": max(ids)}

    def after_enqueue(self):
        # bench/compare's preparation: fresh statistics for the claim, no checkpoint mid-run.
        self.ctx["pg"].q("VACUUM ANALYZE jr_jobs")
        self.ctx["pg"].q("CHECKPOINT")
        self.ctx["pg"].q("SELECT pg_stat_statements_reset()")

    def db_stats(self, n):
        """What the runner asked of PostgreSQL during the clock, per job (pg_stat_statements;
        the harness's own probe and bookkeeping statements left out)."""
        rows = self.ctx["pg"].q(
            "SELECT calls || '|' || rows || '|' || total_exec_time || '|' || "
            "regexp_replace(left(query, 400), '\\s+', ' ', 'g') FROM pg_stat_statements "
            "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())")
        st = {"statements": 0, "exec_ms": 0.0, "claims": 0, "claimed": 0,
              "completions": 0, "completed": 0}
        if os.environ.get("BENCH_DEBUG_SQL"):
            log("\n".join(rows))
        for line in rows:
            calls, nrows, ms, q = line.split("|", 3)
            calls, nrows, ms = int(calls), int(nrows), float(ms)
            if q.startswith("SELECT count(*) FROM") or "pg_stat_statements" in q \
                    or "FROM jr_jobs_done WHERE id BETWEEN" in q:
                continue  # the harness
            st["statements"] += calls
            st["exec_ms"] += ms
            if "DELETE FROM jr_jobs j" in q:  # job_complete_many
                st["completions"] += calls
                st["completed"] += nrows
            elif q.startswith("WITH RECURSIVE lim AS"):  # the claim (host/store/pg_store.cpp)
                st["claims"] += calls
                st["claimed"] += nrows
        return {"statements_per_job": st["statements"] / n,
                "db_exec_us_per_job": st["exec_ms"] * 1000 / n,
                "jobs_per_claim": st["claimed"] / max(1, st["claims"]),
                "jobs_per_completion": st["completed"] / max(1, st["completions"])}

    def waiting(self, batch):
        return int(self.ctx["pg"].one(
            "SELECT count(*) FROM jr_jobs WHERE state = 'available' AND id BETWEEN %d AND %d"
            % (batch["lo"], batch["hi"])))

    def done(self, batch):
        # A completion moves the row from jr_jobs to jr_jobs_done in one committed (fsync'd)
        # transaction: no row left = every completion durable. One primary-key index probe.
        return self.ctx["pg"].one("SELECT count(*) FROM (SELECT 1 FROM jr_jobs LIMIT 1) s") == "0"

    def verify(self, batch):
        rows = self.ctx["pg"].q(
            "SELECT state || ' ' || count(*) FROM jr_jobs_done WHERE id BETWEEN %d AND %d "
            "GROUP BY state" % (batch["lo"], batch["hi"]))
        return rows == ["completed %d" % batch["n"]], rows

    def classify(self, pid, is_root):
        if is_root:
            return "runner"
        c = cmdline(pid)
        if "jr-worker" in c:
            return "jr-worker"
        if "exec_handler.py" in c:
            return "Python handler"
        return "other"

    def concurrency(self):
        pids = tree(self.roots())[1:]
        workers = [p for p in pids if "jr-worker" in cmdline(p)]
        return len(workers), "%d jr-worker processes" % len(workers)


class ExecSystem(RunnerSystem):
    name = "exec"
    label = "exec plugin, warm Python handler"
    kind = "noop"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.plugin = os.path.join(ctx["build"], "plugins", "libjr_exec.so")

    def config(self):
        sdk = os.path.join(self.ctx["src"], "sdk", "python")
        return (
            "[[plugins.exec.kinds]]\n"
            'kind = "noop"\n'
            'command = ["%s", "%s"]\n'
            "workers = %d\n"
            'env = { PYTHONPATH = "%s:%s", PYTHONDONTWRITEBYTECODE = "1" }\n'
            "[plugins.exec.sandbox]\n"
            'readable = ["%s", "%s"]\n'
            % (PY, os.path.join(HERE, "exec_handler.py"), self.ctx["concurrency"], HERE, sdk,
               HERE, sdk))

    def concurrency(self):
        n, text = super().concurrency()
        handlers = [p for p in tree(self.roots()) if "exec_handler.py" in cmdline(p)]
        return min(n, len(handlers)), "%s, %d warm Python handlers" % (text, len(handlers))


class NativeSystem(RunnerSystem):
    name = "native"
    label = "native plugin (echo), sandboxed"
    kind = "echo"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.plugin = os.path.join(ctx["build"], "plugins", "libjr_echo.so")


class RedisSystem(System):
    def prepare(self):
        self.ctx["redis"].flushall()

    def read_ids(self, n, sub):
        path = os.path.join(self.ctx["tmp"], "%s-ids.txt" % self.name)
        env = dict(os.environ, PYTHONPATH=HERE, PYTHONDONTWRITEBYTECODE="1")
        r = subprocess.run([PY, os.path.join(HERE, "harness.py"), sub, str(n), path],
                           capture_output=True, text=True, env=env, cwd=HERE)
        if r.returncode != 0:
            raise RuntimeError("%s failed: %s" % (sub, r.stderr[-3000:]))
        with open(path) as f:
            ids = f.read().split()
        assert len(ids) == n, "%s wrote %d ids for %d jobs" % (sub, len(ids), n)
        return ids

    def after_enqueue(self):
        pass

    def db_stats(self, n):
        return None


class RqSystem(RedisSystem):
    name = "rq"
    label = "RQ 1.13, rq worker (fork per job)"
    worker_class = None

    def start(self):
        for i in range(self.ctx["concurrency"]):
            argv = ["/usr/bin/rq", "worker", "--url", self.ctx["redis_url"], "--path", HERE,
                    "--name", "%s-%d-%d" % (self.name, i, time.monotonic_ns())]
            if self.worker_class:
                argv += ["-w", self.worker_class]
            argv.append(RQ_QUEUE)
            self.argv = argv
            self.spawn(argv, str(i), cwd=HERE, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))

    def enqueue(self, n):
        r = self.ctx["redis"]
        base = r.zcard("rq:finished:" + RQ_QUEUE)
        return {"n": n, "ids": self.read_ids(n, "enqueue-rq"), "base": base}

    def waiting(self, batch):
        return self.ctx["redis"].llen("rq:queue:" + RQ_QUEUE)

    def done(self, batch):
        # RQ marks a job finished (status, finished registry, result) in one pipeline; with
        # appendfsync always, Redis fsyncs the AOF before it answers anybody, this probe included.
        r = self.ctx["redis"]
        p = r.pipeline(transaction=False)
        p.llen("rq:queue:" + RQ_QUEUE)
        p.zcard("rq:finished:" + RQ_QUEUE)
        p.zcard("rq:failed:" + RQ_QUEUE)
        queued, finished, failed = p.execute()
        if failed:
            raise RuntimeError("%d RQ jobs failed:\n%s" % (failed, self.log_tail()))
        return queued == 0 and finished >= batch["base"] + batch["n"]

    def verify(self, batch):
        r = self.ctx["redis"]
        p = r.pipeline(transaction=False)
        for i in batch["ids"]:
            p.hget("rq:job:" + i, "status")
        states = {}
        for s in p.execute():
            k = s.decode() if s else "missing"
            states[k] = states.get(k, 0) + 1
        return states == {"finished": batch["n"]}, states

    def concurrency(self):
        live = [p for p in self.procs if p.poll() is None]
        return len(live), "%d rq worker processes (%s)" % (
            len(live), self.worker_class or "rq.worker.Worker, a work horse forked per job")


class RqSimpleSystem(RqSystem):
    name = "rq_simple"
    label = "RQ 1.13, SimpleWorker (no fork)"
    worker_class = "rq.worker.SimpleWorker"


class CelerySystem(RedisSystem):
    name = "celery"
    label = "Celery 5.2, prefork"

    def start(self):
        argv = [PY, "-m", "celery", "-A", "celery_app", "worker", "-c",
                str(self.ctx["concurrency"]), "-P", "prefork", "--loglevel", "WARNING",
                "-n", "bench-%d@localhost" % time.monotonic_ns()]
        self.argv = argv
        env = dict(os.environ, PYTHONPATH=HERE, PYTHONDONTWRITEBYTECODE="1")
        self.spawn(argv, "worker", cwd=HERE, env=env)

    def enqueue(self, n):
        ids = self.read_ids(n, "enqueue-celery")
        return {"n": n, "ids": ids, "pending": ["celery-task-meta-" + i for i in ids]}

    def waiting(self, batch):
        return self.ctx["redis"].llen("celery")

    def done(self, batch):
        # Every job's result key (the result backend's record of its completion). The pending
        # list is only read once the broker's queue is empty, and shrinks as results appear.
        r = self.ctx["redis"]
        if r.llen("celery") != 0:
            return False
        p = r.pipeline(transaction=False)
        for k in batch["pending"]:
            p.exists(k)
        batch["pending"] = [k for k, e in zip(batch["pending"], p.execute()) if not e]
        return not batch["pending"]

    def verify(self, batch):
        r = self.ctx["redis"]
        states = {}
        ids = batch["ids"]
        for i in range(0, len(ids), 500):
            for v in r.mget(["celery-task-meta-" + x for x in ids[i:i + 500]]):
                k = json.loads(v)["status"] if v else "missing"
                states[k] = states.get(k, 0) + 1
        return states == {"SUCCESS": batch["n"]}, states

    def concurrency(self):
        pids = tree(self.roots())
        pool = [p for p in pids[1:] if "celery" in cmdline(p)]
        return len(pool), "celery main process + %d prefork pool processes" % len(pool)


SYSTEMS = {c.name: c for c in (ExecSystem, NativeSystem, RqSystem, CelerySystem, RqSimpleSystem)}


# --- the warm handler alone ----------------------------------------------------------------------

# The protocol's floor in Python: read a job line, parse it, answer a result line, no threads.
FLOOR = (
    "import json, sys\n"
    "out = sys.stdout\n"
    "out.write('{\"type\":\"ready\",\"protocol\":1}\\n'); out.flush()\n"
    "for line in sys.stdin:\n"
    "    m = json.loads(line)\n"
    "    out.write(json.dumps({'type': 'result', 'result': None}, separators=(',', ':')) + '\\n')\n"
    "    out.flush()\n")


def handler_rtt(ctx, argv, n):
    """Sends n job lines to one handler process over pipes, one at a time (as a jr-worker does),
    outside the runner and the sandbox; returns (wall us per job, handler CPU us per job)."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1",
           "JOBRUNNER_PROTOCOL": "1", "JOBRUNNER_KIND": "noop", "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": "%s:%s" % (HERE, os.path.join(ctx["src"], "sdk", "python"))}
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                         cwd=ctx["tmp"])
    ready = json.loads(p.stdout.readline())
    assert ready.get("type") == "ready", ready
    lines = [(json.dumps({"type": "job", "id": i + 1, "kind": "noop", "queue": "default",
                          "attempt": 1, "max_attempts": 25, "deadline_ms": 0, "payload": {}},
                         separators=(",", ":")) + "\n").encode() for i in range(n)]
    c0 = cpu_seconds([p.pid])
    t0 = time.perf_counter()
    for line in lines:
        p.stdin.write(line)
        p.stdin.flush()
        m = json.loads(p.stdout.readline())
        assert m.get("type") == "result", m
    t1 = time.perf_counter()
    c1 = cpu_seconds([p.pid])
    p.stdin.close()
    p.wait(10)
    return (t1 - t0) * 1e6 / n, (c1 - c0) * 1e6 / n


def handler_alone(ctx):
    n = max(1000, ctx["jobs"])
    variants = [("SDK handler (exec_handler.py + jobrunner_handler.py)",
                 [PY, os.path.join(HERE, "exec_handler.py")]),
                ("protocol floor (readline, json, write; no thread)", [PY, "-c", FLOOR])]
    res = {v[0]: [] for v in variants}
    for _ in range(3):
        for name, argv in variants:
            res[name].append(handler_rtt(ctx, argv, n))
    print()
    print("The warm Python handler alone: %d jobs sent one at a time over pipes by this harness "
          "(no runner, no sandbox), 3 interleaved runs, medians (min-max):" % n)
    for name, rs in res.items():
        print("  %-55s round trip %s us/job, handler CPU %s us/job" % (
            name, med_range([r[0] for r in rs], "%.0f"), med_range([r[1] for r in rs], "%.0f")))
    return {k: {"rtt_us": statistics.median([r[0] for r in v]),
                "cpu_us": statistics.median([r[1] for r in v])} for k, v in res.items()}


# --- one measured drain ------------------------------------------------------------------------

def wait_done(sys_, batch, timeout, probe_s):
    t_end = time.monotonic() + timeout
    while not sys_.done(batch):
        if not sys_.alive():
            raise RuntimeError("%s: a worker process exited\n%s" % (sys_.name, sys_.log_tail()))
        if time.monotonic() > t_end:
            raise RuntimeError("%s: not done within %d s\n%s" % (sys_.name, timeout, sys_.log_tail()))
        time.sleep(probe_s)


def check_transport(ctx):
    """Every client of PostgreSQL and Redis is on TCP 127.0.0.1 (asserted after every drain,
    while the system's workers are still connected)."""
    other = ctx["pg"].one(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
        "AND (client_addr IS NULL OR host(client_addr) <> '127.0.0.1')")
    assert other == "0", "%s PostgreSQL clients not on TCP 127.0.0.1" % other
    for c in ctx["redis"].client_list():
        assert c["addr"].startswith("127.0.0.1:"), "Redis client on %s" % c["addr"]


def run_slot(ctx, sys_, n):
    rec = {"system": sys_.name, "jobs": n, "load_before": loadavg()}
    probe_s = ctx["probe_ms"] / 1000.0
    sys_.prepare()
    sys_.start()
    try:
        # Warm the workers: every process up, connected and through a few jobs.
        warm = sys_.enqueue(ctx["warm"])
        wait_done(sys_, warm, 300, 0.02)
        ok, states = sys_.verify(warm)
        assert ok, "%s warm-up batch: %s" % (sys_.name, states)
        conc, conc_text = sys_.concurrency()
        assert conc == ctx["concurrency"], "%s: concurrency %d, want %d (%s)" % (
            sys_.name, conc, ctx["concurrency"], conc_text)
        rec["concurrency"] = conc_text
        # The batch is enqueued while the processes that take jobs are stopped (SIGSTOP).
        disp = sys_.dispatchers()
        for p in disp:
            os.kill(p, signal.SIGSTOP)
        try:
            batch = sys_.enqueue(n)
            sys_.after_enqueue()
            rec["waiting_at_start"] = sys_.waiting(batch)
            # Enqueued before the clock: all of it still waiting (RQ's and Celery's blocked pops
            # may have handed one job to each stopped worker).
            assert rec["waiting_at_start"] >= n - ctx["concurrency"], "%s: %d of %d waiting" % (
                sys_.name, rec["waiting_at_start"], n)
            roots = sys_.roots()
            c0 = (cpu_seconds(roots), cpu_seconds([ctx["pg_pid"]]), cpu_seconds([ctx["redis_pid"]]))
            parts0 = cpu_by_process(roots, sys_.classify)
        except BaseException:
            for p in disp:
                os.kill(p, signal.SIGCONT)
            raise
        # The clock: from SIGCONT to the last completion's durable record, seen by a probe every
        # probe_ms (stop = midpoint of the last probe that saw work left and the first that
        # saw none).
        t0 = time.monotonic()
        for p in disp:
            os.kill(p, signal.SIGCONT)
        last_neg = t0
        probes = 0
        while True:
            ts = time.monotonic()
            finished = sys_.done(batch)
            te = time.monotonic()
            probes += 1
            if finished:
                t1 = (last_neg + te) / 2
                break
            last_neg = ts
            if not sys_.alive():
                raise RuntimeError("%s: a worker exited\n%s" % (sys_.name, sys_.log_tail()))
            if te - t0 > 900:
                raise RuntimeError("%s: not done in 900 s\n%s" % (sys_.name, sys_.log_tail()))
            time.sleep(probe_s)
        c1 = (cpu_seconds(roots), cpu_seconds([ctx["pg_pid"]]), cpu_seconds([ctx["redis_pid"]]))
        parts1 = cpu_by_process(roots, sys_.classify)
        rec["cpu_parts_us"] = {k: (v - parts0.get(k, 0)) * 1e6 / n for k, v in parts1.items()}
        ok, states = sys_.verify(batch)
        assert ok, "%s: not every job completed: %s" % (sys_.name, states)
        rec["db"] = sys_.db_stats(n)
        check_transport(ctx)
        rec.update(seconds=t1 - t0, probes=probes,
                   probe_error_s=(te - last_neg) / 2,
                   cpu_workers_us=(c1[0] - c0[0]) * 1e6 / n,
                   cpu_pg_us=(c1[1] - c0[1]) * 1e6 / n,
                   cpu_redis_us=(c1[2] - c0[2]) * 1e6 / n)
        rec["jobs_per_s"] = n / rec["seconds"]
        rec["us_per_job"] = rec["seconds"] * 1e6 / n
        rec["argv"] = " ".join(sys_.argv)
    finally:
        sys_.stop()
    rec["load_after"] = loadavg()
    return rec


# --- report ------------------------------------------------------------------------------------

def med_range(xs, fmt):
    return "%s (%s-%s)" % (fmt % statistics.median(xs), fmt % min(xs), fmt % max(xs))


def report(ctx, names, rounds):
    ref = names[0]
    by = {s: [r[s] for r in rounds] for s in names}
    print()
    print("Results: %d jobs per round, %d measured rounds, medians (min-max); ratios are per "
          "round (the same round's system / %s), then median (min-max)" %
          (ctx["jobs"], len(rounds), ref))
    def total(x):
        return x["cpu_workers_us"] + x["cpu_pg_us"] + x["cpu_redis_us"]

    def ratio(vals):
        return "%.2fx (%.2f-%.2f)" % (statistics.median(vals), min(vals), max(vals))

    hdr = "%-36s %18s %20s %18s %18s %11s %11s %11s %18s %18s" % (
        "system", "jobs/s", "wall us/job", "jobs/s vs " + ref, "us/job vs " + ref,
        "CPU workers", "CPU pg", "CPU redis", "CPU total us/job", "CPU vs " + ref)
    print(hdr)
    print("-" * len(hdr))
    for s in names:
        rs = by[s]
        print("%-36s %18s %20s %18s %18s %11s %11s %11s %18s %18s" % (
            SYSTEMS[s].label,
            med_range([x["jobs_per_s"] for x in rs], "%.0f"),
            med_range([x["us_per_job"] for x in rs], "%.0f"),
            ratio([r[s]["jobs_per_s"] / r[ref]["jobs_per_s"] for r in rounds]),
            ratio([r[s]["us_per_job"] / r[ref]["us_per_job"] for r in rounds]),
            "%.0f" % statistics.median([x["cpu_workers_us"] for x in rs]),
            "%.0f" % statistics.median([x["cpu_pg_us"] for x in rs]),
            "%.0f" % statistics.median([x["cpu_redis_us"] for x in rs]),
            med_range([total(x) for x in rs], "%.0f"),
            ratio([total(r[s]) / max(1e-9, total(r[ref])) for r in rounds])))
    print()
    for s in names:
        keys = sorted({k for x in by[s] for k in x["cpu_parts_us"]})
        if keys != ["all"]:
            print("CPU per job inside %s (median): %s" % (s, ", ".join(
                "%s %.0f us" % (k, statistics.median([x["cpu_parts_us"].get(k, 0) for x in by[s]]))
                for k in keys)))
    for s in names:
        dbs = [x["db"] for x in by[s] if x.get("db")]
        if dbs:
            print("PostgreSQL per job for %s (median): %s" % (s, ", ".join(
                "%s %.2f" % (k.replace("_", " "), statistics.median([d[k] for d in dbs]))
                for k in ("statements_per_job", "db_exec_us_per_job",
                          "jobs_per_claim", "jobs_per_completion"))))
    print("wall us/job = drain time / jobs with %d jobs running at once (not the latency of one "
          "job); CPU = median CPU time per job (user+system, /proc) of the system's processes "
          "(workers: its whole process tree, handlers and forked children included), of every "
          "PostgreSQL process, of redis-server, during the clock (CPU us, medians; the CPU "
          "columns are the steadier measure on a loaded machine: wall time follows the share "
          "of the CPUs a system gets, CPU time what it asks for)." % ctx["concurrency"])
    summary = {s: {"jobs_per_s_median": statistics.median([x["jobs_per_s"] for x in by[s]]),
                   "cpu_total_us_median": statistics.median([total(x) for x in by[s]]),
                   "us_per_job_median": statistics.median([x["us_per_job"] for x in by[s]]),
                   "ratio_vs_%s_median" % ref: statistics.median(
                       [r[s]["jobs_per_s"] / r[ref]["jobs_per_s"] for r in rounds])}
               for s in names}
    return summary


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "enqueue-rq":
        return enqueue_rq(int(sys.argv[2]), sys.argv[3])
    if len(sys.argv) == 4 and sys.argv[1] == "enqueue-celery":
        return enqueue_celery(int(sys.argv[2]), sys.argv[3])
    import redis

    e = os.environ
    ctx = {
        "build": e["BENCH_BUILD"], "tmp": e["BENCH_TMP"], "src": e["BENCH_SRC"],
        "runner": os.path.join(e["BENCH_BUILD"], "runner"),
        "pg_url": e["BENCH_PG_URL"], "redis_url": e["BENCH_REDIS_URL"],
        "redis_pid": int(e["BENCH_REDIS_PID"]),
        "jobs": env_int("BENCH_JOBS", 1000), "rounds": env_int("BENCH_ROUNDS", 3),
        "warm": env_int("BENCH_WARM", 100), "concurrency": env_int("BENCH_CONCURRENCY", 4),
        "probe_ms": env_int("BENCH_PROBE_MS", 5),
    }
    with open(e["BENCH_PG_PID_FILE"]) as f:
        ctx["pg_pid"] = int(f.readline())
    names = [s for s in e.get("BENCH_SYSTEMS", "exec,native,rq,celery").split(",") if s]
    for s in names:
        assert s in SYSTEMS, "unknown system %r (known: %s)" % (s, ", ".join(SYSTEMS))
    assert names[0] == "exec" or "exec" not in names, "exec must come first (the reference)"
    assert ctx["rounds"] >= 3, "at least 3 measured rounds"
    pglog = open(os.path.join(ctx["tmp"], "psql.log"), "ab")
    ctx["pg"] = Psql(ctx["pg_url"], pglog)
    ctx["redis"] = redis.Redis.from_url(ctx["redis_url"])
    pg, r = ctx["pg"], ctx["redis"]

    # What the run is, and the rules it asserts.
    import celery
    import rq

    start_load = loadavg()
    t_start = time.time()
    git = subprocess.run(["git", "-C", ctx["src"], "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    fsync = pg.one("SHOW fsync")
    sync = pg.one("SHOW synchronous_commit")
    aof = r.config_get("appendonly")["appendonly"]
    aof_fsync = r.config_get("appendfsync")["appendfsync"]
    with open("/proc/cpuinfo") as f:
        model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    print("bench/exec: per-job overhead of a no-op job, %s UTC" %
          time.strftime("%Y-%m-%d %H:%M", time.gmtime(t_start)))
    print("machine: %d CPUs (%s), kernel %s; load average at start %s" %
          (os.cpu_count(), model, os.uname().release, start_load))
    print("runner %s at %s (%s); Python %s (%s) for exec, RQ and Celery; RQ %s; Celery %s; "
          "redis-py %s; %s; %s" % (
              ctx["runner"], git, os.path.basename(ctx["build"]), sys.version.split()[0], PY,
              rq.__version__, celery.__version__, redis.__version__,
              pg.one("SELECT split_part(version(), ' on ', 1)"),
              "Redis " + r.info("server")["redis_version"]))
    print("systems: " + "; ".join("%s = %s" % (s, SYSTEMS[s].label) for s in names))
    print()
    print("Fairness (asserted by the harness):")
    rules = [
        "same job count for every system in every round: %d (plus %d warm-up jobs per worker "
        "start, not timed), all enqueued before the clock starts (at least %d of them still "
        "waiting when it does)" % (ctx["jobs"], ctx["warm"], ctx["jobs"] - ctx["concurrency"]),
        "same concurrency: %d (runner --concurrency %d with a sandbox pool of %d workers, each "
        "with one warm Python handler for exec; %d rq worker processes; celery -c %d prefork); "
        "counted from /proc after the warm-up, every slot" % ((ctx["concurrency"],) * 5),
        "same function: tasks.noop() (bench/exec/tasks.py) for exec, RQ and Celery, the same "
        "interpreter %s with PYTHONDONTWRITEBYTECODE=1; each system with its default logging "
        "(runner info: no line per job; rq worker INFO: lines per job; celery WARNING: none); "
        "native = echo plugin with payload {} (its no-op path)" % PY,
        "same preparation per slot: clean store (PostgreSQL: jr_jobs empty, TRUNCATE "
        "jr_jobs_done; Redis: FLUSHALL), workers started and warmed with %d jobs, then the "
        "processes that take jobs (runner / rq workers / celery main) SIGSTOPped, the batch "
        "bulk-enqueued by the system's own client in a process of its own (runner enqueue "
        "--payload-file = COPY; rq enqueue_many, pipelined; celery apply_async), then (runner "
        "only) VACUUM ANALYZE jr_jobs + CHECKPOINT" % ctx["warm"],
        "same clock: starts at SIGCONT of those processes, stops when the last completion is "
        "durable (PostgreSQL fsync=%s, synchronous_commit=%s; Redis appendonly=%s, "
        "appendfsync=%s), seen by a probe every %d ms (midpoint of the last negative and the "
        "first positive probe); every job then checked completed" %
        (fsync, sync, aof, aof_fsync, ctx["probe_ms"]),
        "same transport: every client on TCP 127.0.0.1 (PostgreSQL and redis-server listen "
        "there only; pg_stat_activity and CLIENT LIST checked after every drain)",
        "rounds: 1 warm-up round (not counted), then %d rounds, the order rotated every round; "
        "medians and ranges, never the best run" % ctx["rounds"],
    ]
    assert fsync == "on" and sync == "on", "PostgreSQL must run with fsync and synchronous_commit"
    assert aof == "yes", "Redis must run with its append-only file"
    if aof_fsync != "always":
        rules.append("NOTE: appendfsync=%s: Redis does NOT fsync before answering; the peers' "
                     "completions are not durable when the clock stops" % aof_fsync)
    for rule in rules:
        print("  - " + rule)
    print()
    sys.stdout.flush()

    systems = {s: SYSTEMS[s](ctx) for s in names}
    rounds = []
    print("%-5s %-10s %9s %10s %11s %9s %9s %9s %8s  %s" % (
        "round", "system", "jobs/s", "us/job", "waiting@0", "CPU wk", "CPU pg", "CPU redis",
        "probes", "load before -> after"))
    for rnd in range(ctx["rounds"] + 1):
        k = rnd % len(names)
        order = names[k:] + names[:k]
        this = {}
        for s in order:
            log("round %s: %s" % (rnd if rnd else "warm-up", s))
            rec = run_slot(ctx, systems[s], ctx["jobs"])
            assert rec["jobs"] == ctx["jobs"]
            this[s] = rec
            print("%-5s %-10s %9.0f %10.0f %11d %9.0f %9.0f %9.0f %8d  %s -> %s" % (
                rnd if rnd else "warm", s, rec["jobs_per_s"], rec["us_per_job"],
                rec["waiting_at_start"], rec["cpu_workers_us"], rec["cpu_pg_us"],
                rec["cpu_redis_us"], rec["probes"], rec["load_before"], rec["load_after"]))
            sys.stdout.flush()
        if rnd > 0:
            rounds.append(this)
    assert all(len(r_) == len(names) for r_ in rounds), "every system in every round"
    print()
    print("waiting@0 = jobs still in the queue when the clock started (RQ's and Celery's "
          "blocked pops may hand a job or two to a stopped worker before; the runner claims "
          "none while stopped)")
    print("concurrency seen: " + "; ".join(
        "%s: %s" % (s, rounds[-1][s]["concurrency"]) for s in names))
    print("worker commands: ")
    for s in names:
        print("  %s: %s" % (s, rounds[-1][s]["argv"]))
    summary = report(ctx, names, rounds)
    if "exec" in names:
        summary["handler_alone"] = handler_alone(ctx)
    print()
    print("load average at start %s, at end %s; %.0f s in all" %
          (start_load, loadavg(), time.time() - t_start))
    print(json.dumps({"jobs": ctx["jobs"], "rounds": rounds, "summary": summary,
                      "load_start": start_load, "load_end": loadavg()}, default=str))
    pg.close()


if __name__ == "__main__":
    sys.exit(main())
