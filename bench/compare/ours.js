// bench/compare/ours.js: driver for our `runner` binary in database "jr" of the run's cluster:
// schema (runner migrate), bulk enqueue (the CLI's COPY path), single enqueue (jr_enqueue()),
// the worker process (`runner --plugins DIR [flags]`, the echo plugin's no-op fast path), and
// the queries the fair harness (fair.js) needs: job tables, the unfinished-job probe, counts.
// Same interface as gw.js and boss.js. Single-threaded (the event loop).
"use strict";

const fs = require("fs");
const path = require("path");
const L = require("./lib");

class Ours {
  constructor(cluster, runner, echoSo, work, db = "jr") {
    this.name = "ours";
    this.cluster = cluster;
    this.runner = runner;
    this.db = db;
    this.work = work;
    this.plugins = path.join(work, "plugins");
    fs.mkdirSync(this.plugins, { recursive: true });
    // A copy, not a symlink: a sandboxed plugin may only read inside its plugin directory.
    fs.copyFileSync(path.resolve(echoSo), path.join(this.plugins, "libjr_echo.so"));
    fs.chmodSync(this.plugins, 0o755);
    this.dsn = cluster.url(db);
    this.env = { ...process.env, DATABASE_URL: this.dsn };
    this.schemas = ["public"];
    this.queue = "default";
  }

  // What this system's workers connect with (checked by the fairness assertions).
  connectionStrings() {
    return [this.dsn];
  }

  async setup() {
    await this.cluster.recreateDb(this.db);
    const r = L.run(this.runner, ["migrate"], { env: this.env });
    if (r.code !== 0) throw new Error(`runner migrate failed: ${r.stderr}`);
    this.h = await this.cluster.connect(this.db, "bench_harness");
  }

  async close() {
    if (this.h) await this.h.end();
  }

  async reset() {
    await this.h.query("TRUNCATE jr_jobs, jr_jobs_done, jr_webhook_deliveries");
  }

  payloadFile(n, line = "{}") {
    const f = path.join(this.work, `payload-${n}-${Buffer.from(line).toString("hex").slice(0, 16)}.jsonl`);
    if (!fs.existsSync(f)) fs.writeFileSync(f, `${line}\n`.repeat(n));
    return f;
  }

  // `runner enqueue echo --payload-file F`: process start, file parse, COPY, commit.
  enqueue(n) {
    const f = this.payloadFile(n);
    const r = L.run(this.runner, ["enqueue", "echo", "--payload-file", f, "--log-level", "info"],
      { env: this.env, stdio: ["ignore", "ignore", "pipe"] });
    if (r.code !== 0) throw new Error(`runner enqueue failed: ${r.stderr}`);
    // The CLI logs the rate of its store call alone (id reservation + COPY + commit).
    const m = /"jobs_per_second":([0-9.e+]+)/.exec(r.stderr);
    return { seconds: r.seconds, jobs_per_s: n / r.seconds, store_jobs_per_s: m ? Number(m[1]) : null };
  }

  enqueueMany(n) {
    let secs = 0;
    for (let i = 0; i < n; i += 200000) secs += this.enqueue(Math.min(200000, n - i)).seconds;
    return n / secs;
  }

  async countQueued() {
    return Number(await L.q1(this.h, "SELECT count(*) FROM jr_jobs WHERE state = 'available'"));
  }

  // One index probe: is any job left in the hot table (queued, running or retrying)? A job
  // leaves jr_jobs in the statement that records its completion, so "no row" means every
  // completion is committed. ORDER BY id LIMIT 1 walks the primary key (the same probe as the
  // peers'), never a sequential scan over dead tuples.
  get unfinishedSql() {
    return "SELECT id FROM jr_jobs ORDER BY id LIMIT 1";
  }

  async countDone() {
    return Number(await L.q1(this.h, "SELECT count(*) FROM jr_jobs_done WHERE state = 'completed'"));
  }

  // The database's own record of the last completion (a cross-check of the probe clock).
  async lastCompletionMs() {
    const v = await L.q1(this.h, "SELECT extract(epoch from max(finished_at)) * 1000 FROM jr_jobs_done");
    return v === null ? null : Number(v);
  }

  // Jobs per second from the first claim to the last completion (database clock).
  async dbRate() {
    const r = (await this.h.query(`SELECT count(*)::float8 AS n,
        extract(epoch from max(finished_at) - min(started_at))::float8 AS s FROM jr_jobs_done`)).rows[0];
    return r.s > 0 ? r.n / r.s : null;
  }

  // A producer for steady loads: one statement per job, autocommit, through a pool.
  async producer(poolSize = L.PRODUCER_POOL) {
    const pool = new L.pg.Pool({ ...this.cluster.pgConfig(this.db), max: poolSize });
    pool.on("error", () => {});
    await Promise.all([...Array(poolSize).keys()].map(() => pool.query("SELECT 1")));
    return {
      send: async () => {
        const r = await pool.query("SELECT jr_enqueue('echo', '{}'::jsonb, '{\"queue\": \"default\"}'::jsonb) AS id");
        return String(r.rows[0].id);
      },
      // k jobs in one statement (one commit).
      sendBatch: async (k) => {
        await pool.query("SELECT jr_enqueue('echo', '{}'::jsonb, '{\"queue\": \"default\"}'::jsonb) FROM generate_series(1, $1)", [k]);
      },
      close: () => pool.end(),
    };
  }

  // Start times of the jobs (claim, database clock), id -> ms since the epoch.
  async startTimes() {
    const r = await this.h.query("SELECT id, extract(epoch from started_at) * 1000 AS s, extract(epoch from created_at) * 1000 AS c FROM jr_jobs_done");
    return r.rows.map((x) => ({ id: String(x.id), start: Number(x.s), created: Number(x.c) }));
  }

  // The worker. Every flag is explicit in `args` (no flags = the runner's defaults); only the
  // plugin directory is always given. ready() is immediate: the clock starts at exec.
  worker(args, tag) {
    const logFile = path.join(this.work, `runner-${tag}.log`);
    const self = this;
    let child = null;
    return {
      args,
      ready: async () => {},
      go() {
        child = L.start(self.runner, ["--plugins", self.plugins, ...args], { env: self.env }, logFile);
        this.pid = child.pid;
      },
      pids: () => (child ? [child.pid, ...L.descendants(child.pid)] : []),
      exited: () => child && child.exitCode !== null,
      why: () => `runner exited (${tag}); see ${logFile}`,
      async stop() {
        if (child) await L.stop(child);
      },
    };
  }
}

module.exports = { Ours };
