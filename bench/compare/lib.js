// bench/compare/lib.js: shared helpers for the side-by-side benchmark: the throwaway PostgreSQL
// cluster (one for every system, reached over the same connection type), database connections,
// child processes, CPU time from /proc, timing, statistics (median and range). Plain CommonJS;
// every module of the harness runs in one Node 22 process, single-threaded (the event loop), so
// no locking. The systems' workers are separate processes (our runner, peer.js for the peers).
"use strict";

const path = require("path");
const fs = require("fs");
const os = require("os");
const net = require("net");
const { spawn, spawnSync } = require("child_process");

const HERE = __dirname;
const PEERS = path.join(HERE, ".peers", "node_modules");
const pg = require(path.join(PEERS, "pg"));

// Wall clock (CLOCK_REALTIME, the clock PostgreSQL's now() and the peers' processes read) with
// sub-millisecond resolution, in milliseconds since the epoch. performance.timeOrigin + now() is
// monotonic and drifts from the wall clock (660 ms after 10 minutes in one run on this VM), so
// the estimate is kept inside the millisecond Date.now() reports: error < 1 ms, no drift.
let wallBase = Date.now();
let perfBase = performance.now();
function nowMs() {
  const p = performance.now();
  let est = wallBase + (p - perfBase);
  const d = Date.now();
  if (est < d || est >= d + 1) {
    wallBase = est < d ? d : d + 0.999;
    perfBase = p;
    est = wallBase;
  }
  return est;
}

// Connections of every system's producer (the harness's enqueue path): the same for all.
const PRODUCER_POOL = 32;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function load1() {
  return Number(os.loadavg()[0].toFixed(2));
}
function loadAvg() {
  return os.loadavg().map((x) => x.toFixed(2)).join(" ");
}

function log(...a) {
  process.stderr.write(`[compare ${new Date().toISOString().slice(11, 19)} load ${loadAvg()}] ${a.join(" ")}\n`);
}

// Runs a command to completion; returns { code, stdout, stderr, seconds }.
function run(cmd, args, opts = {}) {
  const start = nowMs();
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 1 << 30, ...opts });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, seconds: (nowMs() - start) / 1000 };
}

// Starts a long-running child; stdout/stderr go to a log file unless stdio is given.
function start(cmd, args, opts = {}, logFile) {
  let child;
  if (logFile) {
    const out = fs.openSync(logFile, "a");
    child = spawn(cmd, args, { stdio: ["ignore", out, out], ...opts });
    fs.closeSync(out);
  } else {
    child = spawn(cmd, args, opts);
  }
  live.add(child);
  child.exited = new Promise((r) => child.on("exit", (code, sig) => {
    live.delete(child);
    r({ code, sig });
  }));
  return child;
}

// Children still running (workers, pgbench): killed when the harness dies on an error.
const live = new Set();
function killAll() {
  for (const c of live) {
    try {
      c.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
}

async function stop(child, ms = 15000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const t = setTimeout(() => child.kill("SIGKILL"), ms);
  await child.exited;
  clearTimeout(t);
}

// ---- CPU time from /proc ------------------------------------------------------------------

const TICK = Number(run("getconf", ["CLK_TCK"]).stdout.trim()) || 100;

// utime + stime of a process (all its threads, living and exited), in milliseconds; null when
// the process is gone.
function cpuMs(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
    // fields after the command: state(3) ... utime(14) stime(15): index 11 and 12 here
    return ((Number(f[11]) + Number(f[12])) * 1000) / TICK;
  } catch {
    return null;
  }
}

function childPids(pid) {
  const r = run("pgrep", ["-P", String(pid)]);
  return r.stdout && r.stdout.trim() ? r.stdout.trim().split("\n").map(Number) : [];
}

// Every descendant of pid (children, grandchildren, ...), from one scan of /proc (no child
// process: spawning pgrep per worker blocked the event loop for seconds on a loaded machine).
function descendants(pid) {
  const kids = new Map();
  for (const e of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const s = fs.readFileSync(`/proc/${e}/stat`, "utf8");
      const ppid = Number(s.slice(s.lastIndexOf(")") + 2).split(" ")[1]);
      if (!kids.has(ppid)) kids.set(ppid, []);
      kids.get(ppid).push(Number(e));
    } catch {
      // gone meanwhile
    }
  }
  const out = [];
  const todo = [pid];
  while (todo.length) {
    for (const c of kids.get(todo.pop()) || []) {
      out.push(c);
      todo.push(c);
    }
  }
  return out;
}

function rssKb(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const m = s.match(/VmRSS:\s+(\d+)/);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

// ---- statistics ---------------------------------------------------------------------------

function median(xs) {
  const v = xs.filter((x) => x !== null && x !== undefined && !Number.isNaN(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

// { median, min, max, n, values } of a list of numbers (nulls dropped).
function summary(xs) {
  const v = xs.filter((x) => x !== null && x !== undefined && !Number.isNaN(x));
  if (v.length === 0) return { median: null, min: null, max: null, n: 0, values: [] };
  return { median: median(v), min: Math.min(...v), max: Math.max(...v), n: v.length, values: v };
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[i];
}

function fmt(x, digits = 0) {
  if (x === null || x === undefined || Number.isNaN(x)) return "n/a";
  return Number(x).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

// "12,345 (11,900-12,800)": a median with its range.
function fmtRange(s, digits = 0, scale = 1) {
  if (!s || s.median === null) return "n/a";
  if (s.n === 1) return fmt(s.median * scale, digits);
  return `${fmt(s.median * scale, digits)} (${fmt(s.min * scale, digits)}-${fmt(s.max * scale, digits)})`;
}

// Calls send(i) for i < total at `rate` per second (fire and forget, at most `cap` in flight;
// when the database falls behind, the schedule slips rather than piling up connections).
// stopFlag() ends the loop early. Returns the achieved rate, the number sent and failed.
async function paced(rate, total, send, cap = 32, stopFlag = () => false) {
  const inflight = new Set();
  let failed = 0;
  let sent = 0;
  const start = nowMs();
  for (let i = 0; i < total && !stopFlag(); ++i) {
    const wait = start + (i * 1000) / rate - nowMs();
    if (wait > 0) await sleep(wait);
    while (inflight.size >= cap) await Promise.race(inflight);
    const p = Promise.resolve().then(() => send(i)).catch(() => { ++failed; })
      .finally(() => inflight.delete(p));
    inflight.add(p);
    ++sent;
  }
  await Promise.all(inflight);
  return { achieved_rate: sent / ((nowMs() - start) / 1000), sent, failed };
}

// ---- the cluster --------------------------------------------------------------------------

function pgBindir() {
  if (process.env.PG_BINDIR) return process.env.PG_BINDIR;
  const root = "/usr/lib/postgresql";
  const vs = fs.existsSync(root) ? fs.readdirSync(root).filter((v) => fs.existsSync(path.join(root, v, "bin", "postgres"))) : [];
  if (vs.length === 0) throw new Error("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (set PG_BINDIR)");
  vs.sort((a, b) => Number(a) - Number(b));
  return path.join(root, vs[vs.length - 1], "bin");
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

// One throwaway PostgreSQL for every system of the run. `conn` is "tcp" (127.0.0.1, a free
// port) or "socket" (a unix socket in the work dir, no TCP listener at all): every client of
// the run, the harness included, uses that one connection type. Default durability (fsync,
// synchronous_commit on), shared_buffers 128MB, max_connections 200, pg_stat_statements
// preloaded (the same small overhead for every system).
class Cluster {
  constructor(work, conn, extraSettings = {}) {
    if (conn !== "tcp" && conn !== "socket") throw new Error(`--conn must be tcp or socket, not ${conn}`);
    this.work = work;
    this.conn = conn;
    this.dataDir = path.join(work, "pg");
    this.sockDir = path.join(work, "sock");
    this.bindir = pgBindir();
    this.user = "postgres";
    this.extra = extraSettings;
    // As root the server must run as an unprivileged user.
    this.runAs = process.getuid() === 0 ? "postgres" : null;
  }

  pgcmd(tool, args) {
    const bin = path.join(this.bindir, tool);
    const r = this.runAs ? run("runuser", ["-u", this.runAs, "--", bin, ...args]) : run(bin, args);
    return r;
  }

  async start() {
    this.port = await freePort();
    fs.mkdirSync(this.sockDir, { recursive: true });
    fs.mkdirSync(this.dataDir, { recursive: true });
    if (this.runAs) {
      run("chown", [this.runAs, this.dataDir, this.sockDir]);
      fs.chmodSync(this.dataDir, 0o700);
    }
    let r = this.pgcmd("initdb", ["-D", this.dataDir, "-U", this.user, "--auth=trust", "--encoding=UTF8",
      "--locale=C", "--no-instructions"]);
    if (r.code !== 0) throw new Error(`initdb failed: ${r.stderr}${r.stdout}`);
    const settings = {
      listen_addresses: this.conn === "tcp" ? "'127.0.0.1'" : "''",
      port: this.port,
      unix_socket_directories: `'${this.sockDir}'`,
      max_connections: 200,
      shared_buffers: "128MB",
      shared_preload_libraries: "'pg_stat_statements'",
      "pg_stat_statements.track": "top",
      "pg_stat_statements.max": 5000,
      ...this.extra,
    };
    const conf = Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join("\n");
    fs.appendFileSync(path.join(this.dataDir, "postgresql.conf"), `\n# bench/compare\n${conf}\n`);
    r = this.pgcmd("pg_ctl", ["start", "-D", this.dataDir, "-l", path.join(this.dataDir, "server.log"), "-w", "-t", "60"]);
    if (r.code !== 0) throw new Error(`pg_ctl start failed: ${r.stderr}${r.stdout}\n${this.logTail()}`);
    this.postmasterPid = Number(fs.readFileSync(path.join(this.dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
  }

  logTail() {
    try {
      return fs.readFileSync(path.join(this.dataDir, "server.log"), "utf8").split("\n").slice(-15).join("\n");
    } catch {
      return "";
    }
  }

  stop() {
    if (fs.existsSync(path.join(this.dataDir, "postmaster.pid"))) this.pgcmd("pg_ctl", ["stop", "-D", this.dataDir, "-m", "fast", "-w"]);
  }

  // libpq URL (our runner, pgbench): the one connection type of the run.
  url(db, user = this.user) {
    if (this.conn === "tcp") return `postgresql://${encodeURIComponent(user)}@127.0.0.1:${this.port}/${encodeURIComponent(db)}`;
    return `postgresql:///${encodeURIComponent(db)}?host=${encodeURIComponent(this.sockDir)}&port=${this.port}&user=${encodeURIComponent(user)}`;
  }

  // node-postgres config (the peers, the harness).
  pgConfig(db, user = this.user) {
    return { host: this.conn === "tcp" ? "127.0.0.1" : this.sockDir, port: this.port, database: db, user };
  }

  // pgbench/psql arguments.
  cliArgs(db, user = this.user) {
    return ["-h", this.conn === "tcp" ? "127.0.0.1" : this.sockDir, "-p", String(this.port), "-U", user, "-d", db];
  }

  // Does a connection string / config use this run's connection type? (fairness assertion)
  usesConnType(s) {
    const raw = typeof s === "string" ? s : JSON.stringify(s);
    let text = raw;
    try {
      text = decodeURIComponent(raw);
    } catch {
      // not URI-encoded
    }
    const tcp = text.includes("127.0.0.1");
    const sock = text.includes(this.sockDir);
    return this.conn === "tcp" ? tcp && !sock : sock && !tcp;
  }

  async connect(db, user = this.user) {
    const c = new pg.Client(this.pgConfig(db, user));
    await c.connect();
    c.on("error", () => {});
    c.backendPid = Number((await c.query("SELECT pg_backend_pid() AS p")).rows[0].p);
    return c;
  }

  async recreateDb(name) {
    const c = await this.connect("postgres");
    try {
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.query(`CREATE DATABASE ${name}`);
    } finally {
      await c.end();
    }
  }

  // Every process of the server (postmaster and its children) with its CPU time now.
  serverCpu() {
    const out = new Map();
    const pm = this.postmasterPid;
    out.set(pm, cpuMs(pm));
    for (const p of descendants(pm)) out.set(p, cpuMs(p));
    return out;
  }
}

// A peer's worker in its own process (peer.js); the same handle shape as Ours.worker().
function peerWorker(cfg, logFile) {
  const child = start(process.execPath, [path.join(HERE, "peer.js"), JSON.stringify(cfg)],
    { stdio: ["pipe", "pipe", "pipe"] });
  const errLog = fs.createWriteStream(logFile, { flags: "a" });
  child.stderr.pipe(errLog);
  const lines = [];
  const waiters = [];
  let buf = "";
  child.stdout.on("data", (d) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      lines.push(line);
      for (const w of waiters.splice(0)) w();
    }
  });
  const next = async (pred, what, ms = 60000) => {
    const deadline = nowMs() + ms;
    for (;;) {
      const k = lines.findIndex(pred);
      if (k >= 0) return lines.splice(k, 1)[0];
      if (child.exitCode !== null) throw new Error(`peer ${cfg.system} exited before "${what}"; see ${logFile}`);
      if (nowMs() > deadline) throw new Error(`peer ${cfg.system}: no "${what}" in ${ms} ms; see ${logFile}`);
      await Promise.race([new Promise((r) => waiters.push(r)), sleep(200)]);
    }
  };
  return {
    pid: child.pid,
    ready: () => next((l) => l === "loaded", "loaded"),
    go() {
      child.stdin.write("go\n");
    },
    started: () => next((l) => l === "started", "started"),
    pids: () => [child.pid],
    exited: () => child.exitCode !== null,
    why: () => `peer ${cfg.system} exited; see ${logFile}`,
    async stop() {
      if (child.exitCode !== null) return null;
      child.stdin.write("stop\n");
      const out = await next((l) => l.startsWith("{"), "result", 30000).catch(() => null);
      const t = setTimeout(() => child.kill("SIGKILL"), 10000);
      await child.exited;
      clearTimeout(t);
      errLog.end();
      return out ? JSON.parse(out) : null;
    },
  };
}

async function q1(client, sql, params) {
  const r = await client.query(sql, params);
  if (r.rows.length === 0) return null;
  return Object.values(r.rows[0])[0];
}

module.exports = {
  HERE, PEERS, pg, nowMs, sleep, load1, loadAvg, log, run, start, stop, cpuMs, childPids, descendants, rssKb,
  median, summary, percentile, fmt, fmtRange, paced, Cluster, q1, TICK, peerWorker, killAll, PRODUCER_POOL,
};
