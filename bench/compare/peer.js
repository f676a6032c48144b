// bench/compare/peer.js: one peer worker (graphile-worker or pg-boss) as its own process, so
// every system's worker runs outside the harness, as our runner does: the harness's probes and
// producers never share the worker's event loop. Protocol on stdin/stdout, one line each:
//   argv[2] = JSON { system: "gw" | "boss", conn, settings, queue, record }
//   -> "loaded"   (module imported: Node start-up and import are not the library's work)
//   <- "go"       (the harness starts its clock, then the worker starts: run() / start()+work())
//   -> "started"
//   <- "stop"     -> one JSON line { handled, starts: [[id, ms], ...] (if record) } and exit 0.
// No-op handlers. Single-threaded (the event loop).
"use strict";

const path = require("path");
const readline = require("readline");

const PEERS = path.join(__dirname, ".peers", "node_modules");
const cfg = JSON.parse(process.argv[2]);
// The wall clock kept within 1 ms of Date.now() (see nowMs in lib.js).
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

let handled = 0;
const starts = [];

function note(id) {
  ++handled;
  if (cfg.record) starts.push([String(id), nowMs()]);
}

async function main() {
  let stopFn;
  let startFn;
  if (cfg.system === "gw") {
    const gw = await import(path.join(PEERS, "graphile-worker", "dist", "index.js"));
    const logger = new gw.Logger(() => (level, message) => {
      if (level === "error") process.stderr.write(`[graphile-worker] ${message}\n`);
    });
    startFn = async () => {
      const runner = await gw.run({
        preset: { worker: { connectionString: cfg.conn, ...cfg.settings } },
        logger,
        taskList: { [cfg.queue]: async (_payload, helpers) => { note(helpers.job.id); } },
        noHandleSignals: true,
      });
      stopFn = () => runner.stop();
    };
  } else if (cfg.system === "boss") {
    const { PgBoss } = await import(path.join(PEERS, "pg-boss", "dist", "index.js"));
    startFn = async () => {
      const boss = new PgBoss({ connectionString: cfg.conn, ...cfg.settings.ctor });
      boss.on("error", (e) => process.stderr.write(`[pg-boss] ${e.message}\n`));
      await boss.start();
      const handler = async (jobs) => { for (const j of jobs) note(j.id); };
      if (Object.keys(cfg.settings.work || {}).length) await boss.work(cfg.queue, cfg.settings.work, handler);
      else await boss.work(cfg.queue, handler);
      stopFn = async () => {
        await boss.offWork(cfg.queue, { wait: true });
        await boss.stop({ graceful: true, close: true, timeout: 5000 });
      };
    };
  } else {
    throw new Error(`unknown system ${cfg.system}`);
  }
  process.stdout.write("loaded\n");
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (line === "go") {
      await startFn();
      process.stdout.write("started\n");
    } else if (line === "stop") {
      if (stopFn) await stopFn();
      // A pipe write is asynchronous: exit only once the (large) line is flushed.
      process.stdout.write(`${JSON.stringify({ handled, starts })}\n`, () => process.exit(0));
    }
  }
}

main().catch((e) => {
  process.stderr.write(`peer: ${e.stack || e}\n`);
  process.exit(1);
});
