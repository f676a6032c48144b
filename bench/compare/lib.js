// bench/compare/lib.js: shared helpers for the side-by-side benchmark (database connections,
// child processes, timing, percentiles). Plain CommonJS; every module here is loaded by
// compare.js in one Node 22 process, single-threaded (the event loop), so no locking.
"use strict";

const path = require("path");
const fs = require("fs");
const os = require("os");
const { spawn, spawnSync } = require("child_process");

const HERE = __dirname;
const PEERS = path.join(HERE, ".peers", "node_modules");
const pg = require(path.join(PEERS, "pg"));

// Wall clock with microsecond resolution, in milliseconds since the epoch.
const t0 = performance.timeOrigin;
function nowMs() {
  return t0 + performance.now();
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function loadAvg() {
  return os.loadavg().map((x) => x.toFixed(2)).join(" ");
}

function log(...a) {
  process.stderr.write(`[compare ${new Date().toISOString().slice(11, 19)} load ${loadAvg()}] ${a.join(" ")}\n`);
}

// The password for `user` in a libpq password file ("*:*:*:user:password" lines, as the
// runner writes them for the managed cluster).
function passfilePassword(file, user) {
  for (const line of fs.readFileSync(file, "utf8").split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const f = line.split(":");
    if (f.length >= 5 && (f[3] === user || f[3] === "*")) return f.slice(4).join(":");
  }
  return undefined;
}

// "postgresql:///db?host=/dir&user=u&passfile=/f" (what `runner db url` prints) -> node-postgres
// config (node-postgres does not read a passfile named in the URL: the password is taken here).
function pgConfig(url, database) {
  const u = new URL(url);
  const host = u.searchParams.get("host") || "localhost";
  const cfg = { host, database: database || decodeURIComponent(u.pathname.slice(1)) || "postgres" };
  if (u.searchParams.get("port")) cfg.port = Number(u.searchParams.get("port"));
  if (u.username) cfg.user = decodeURIComponent(u.username);
  if (u.searchParams.get("user")) cfg.user = u.searchParams.get("user");
  if (u.password) cfg.password = decodeURIComponent(u.password);
  if (u.searchParams.get("password")) cfg.password = u.searchParams.get("password");
  if (!cfg.password && u.searchParams.get("passfile") && cfg.user) {
    cfg.password = passfilePassword(u.searchParams.get("passfile"), cfg.user);
  }
  return cfg;
}

// The same URL pointing at another database of the cluster.
function urlFor(url, database) {
  const u = new URL(url);
  u.pathname = "/" + encodeURIComponent(database);
  return u.toString();
}

// A libpq connection string graphile-worker / pg-boss accept (socket dir as host).
function connString(url, database) {
  const c = pgConfig(url, database);
  let s = `postgres:///${encodeURIComponent(c.database)}?host=${encodeURIComponent(c.host)}`;
  if (c.port) s += `&port=${c.port}`;
  if (c.user) s += `&user=${encodeURIComponent(c.user)}`;
  if (c.password) s += `&password=${encodeURIComponent(c.password)}`;
  return s;
}

async function connect(url, database) {
  const c = new pg.Client(pgConfig(url, database));
  await c.connect();
  return c;
}

async function q1(client, sql, params) {
  const r = await client.query(sql, params);
  if (r.rows.length === 0) return null;
  return Object.values(r.rows[0])[0];
}

async function recreateDb(url, name) {
  const c = await connect(url, "postgres");
  try {
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${name}`);
  } finally {
    await c.end();
  }
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[i];
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

// Number of child processes of pid (the runner's sandboxed workers).
function childCount(pid) {
  const r = run("pgrep", ["-P", String(pid)]);
  return r.stdout && r.stdout.trim() ? r.stdout.trim().split("\n").length : 0;
}

// Runs a command to completion; returns { code, stdout, stderr, seconds }.
function run(cmd, args, opts = {}) {
  const start = nowMs();
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 1 << 30, ...opts });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, seconds: (nowMs() - start) / 1000 };
}

// Starts a long-running child; output goes to a log file.
function start(cmd, args, opts = {}, logFile) {
  const out = fs.openSync(logFile, "a");
  const child = spawn(cmd, args, { stdio: ["ignore", out, out], ...opts });
  fs.closeSync(out);
  child.exited = new Promise((r) => child.on("exit", (code, sig) => r({ code, sig })));
  return child;
}

async function stop(child, ms = 15000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const t = setTimeout(() => child.kill("SIGKILL"), ms);
  await child.exited;
  clearTimeout(t);
}

// Calls send(i) for i < total at `rate` per second (fire and forget, at most `cap` in flight;
// when the database falls behind, the schedule slips rather than piling up connections).
// Returns the achieved rate and the number of failed sends.
async function paced(rate, total, send, cap = 32) {
  const inflight = new Set();
  let failed = 0;
  const start = nowMs();
  for (let i = 0; i < total; ++i) {
    const wait = start + (i * 1000) / rate - nowMs();
    if (wait > 0) await sleep(wait);
    while (inflight.size >= cap) await Promise.race(inflight);
    const p = Promise.resolve().then(() => send(i)).catch(() => { ++failed; })
      .finally(() => inflight.delete(p));
    inflight.add(p);
  }
  await Promise.all(inflight);
  return { achieved_rate: total / ((nowMs() - start) / 1000), failed };
}

function fmt(x, digits = 0) {
  if (x === null || x === undefined || Number.isNaN(x)) return "n/a";
  return Number(x).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

module.exports = {
  HERE, PEERS, pg, nowMs, sleep, loadAvg, log, pgConfig, urlFor, connString, connect, q1,
  recreateDb, percentile, paced, rssKb, run, start, stop, fmt, childCount,
};
