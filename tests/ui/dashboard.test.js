#!/usr/bin/env node
// Browser test of the dashboard (issue 21): Debian's chromium, driven headless by puppeteer-core
// (installed by scripts/install-ui-test-deps.sh into tests/ui/node_modules; no network here),
// against a real runner with real jobs in every state on its own managed PostgreSQL, and a
// dashboard-only `runner ui` without a token. Every page renders; filters narrow the list; a bulk
// replay of 50 dead letters re-runs them; pausing a queue stops claiming; a running job's page
// shows its progress moving; hostile payloads and errors (markup, a 1 MB string, bytes that are
// not UTF-8) render inert and the page stays usable; changes without the token are refused and
// the page says why. The job page keeps its dependency graph and webhook deliveries current;
// held lock keys show on the Queues page; a time range narrows the Jobs list.
// Screenshots of each page go to $JR_UI_SCREENSHOTS when set (a path relative to the repository,
// e.g. docs/ui: what scripts/test.sh does in CI), else to $JR_SCREENSHOTS (the build tree, set
// by tests/ui/CMakeLists.txt), so a plain ctest run leaves the checkout as it was.
'use strict';

const assert = require('assert');
const cp = require('child_process');
const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');

let puppeteer;
try {
  puppeteer = require('puppeteer-core');
} catch (e) {
  console.error('puppeteer-core is not installed in tests/ui/node_modules: run scripts/install-deps.sh');
  process.exit(1);
}

const RUNNER = process.env.JR_RUNNER;
const CHROMIUM = process.env.JR_CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.JR_UI_SCREENSHOTS ? path.resolve(__dirname, '..', '..', process.env.JR_UI_SCREENSHOTS)
                                            : process.env.JR_SCREENSHOTS;
const PLUGINS = [process.env.JR_ECHO_SO, process.env.JR_UI_PLUGIN_SO];
for (const [k, v] of Object.entries({ JR_RUNNER: RUNNER, JR_ECHO_SO: PLUGINS[0], JR_UI_PLUGIN_SO: PLUGINS[1] })) {
  if (!v || !fs.existsSync(v)) { console.error(`${k} (${v}) does not exist`); process.exit(1); }
}
if (!fs.existsSync(CHROMIUM)) { console.error(`no browser at ${CHROMIUM}: run scripts/install-deps.sh`); process.exit(1); }

const TOKEN = 'ui-test-token';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'jr-ui-'));
fs.chmodSync(tmp, 0o755);
const dataDir = path.join(tmp, 'db');
const children = [];
let browser = null;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const t0 = Date.now();
const log = (...a) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);

function runner(args, opts) {
  const r = cp.spawnSync(RUNNER, ['--data-dir', dataDir, ...args], { encoding: 'utf8', env: { ...process.env, ...(opts && opts.env) },
                                                                       input: opts && opts.input, timeout: 60000, maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`runner ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout.trim();
}
function enqueue(kind, payload, ...extra) { return Number(runner(['enqueue', kind, '--payload', JSON.stringify(payload), ...extra])); }
function enqueueMany(kind, payloads, ...extra) {
  const file = path.join(tmp, `bulk-${Math.random().toString(36).slice(2)}.jsonl`);
  fs.writeFileSync(file, payloads.map((p) => JSON.stringify(p)).join('\n') + '\n');
  return runner(['enqueue', kind, '--payload-file', file, ...extra]).split('\n').map(Number);
}

// A background runner process; resolves with its HTTP port (from its "http server listening" line).
function startProcess(args, env) {
  const logFile = path.join(tmp, `proc-${children.length}.log`);
  const out = fs.openSync(logFile, 'w');
  const child = cp.spawn(RUNNER, ['--data-dir', dataDir, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', out, out] });
  children.push(child);
  child.logFile = logFile;
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + 60000;
    const look = () => {
      const text = fs.readFileSync(logFile, 'utf8');
      const m = text.match(/"msg":"http server listening".*"port":(\d+)/);
      if (m) return resolve({ child, port: Number(m[1]), log: () => fs.readFileSync(logFile, 'utf8') });
      if (child.exitCode !== null || Date.now() > deadline) return reject(new Error('no HTTP port:\n' + text));
      setTimeout(look, 50);
    };
    look();
  });
}

// The page's own query string and datetime-local value of an instant (host/ops/ui/core.js, jobs.js).
function q(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) u.set(k, v);
  return '?' + u.toString();
}
function toLocal(iso) {
  const d = new Date(iso);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

async function waitFor(what, fn, ms = 30000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) { last = e; }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last && (last.message || JSON.stringify(last))})`);
    await sleep(100);
  }
}

async function main() {
  runner(['migrate']);
  const url = runner(['db', 'url']);
  const env = { DATABASE_URL: url };
  const pluginDir = path.join(tmp, 'plugins');
  fs.mkdirSync(pluginDir);
  for (const so of PLUGINS) fs.copyFileSync(so, path.join(pluginDir, path.basename(so)));
  const config = path.join(tmp, 'runner.toml');
  fs.writeFileSync(config, '[[cron]]\nname = "heartbeat"\nschedule = "@every 2s"\nkind = "echo"\npayload = { cron = true }\nqueue = "cron"\n' +
                         // A grant of the operator's (the trust model), shown on the Runners page.
                         '[plugins.ui_dashboard]\nenqueue = ["echo"]\n');

  // ---- jobs in every state ----
  const completed = enqueueMany('echo', Array.from({ length: 30 }, (_, i) => ({ n: i })));
  const reports = enqueueMany('echo', Array.from({ length: 10 }, (_, i) => ({ report: i, note: i === 3 ? 'needle-in-payload' : 'hay' })), '--queue', 'reports');
  const dead = enqueueMany('echo', Array.from({ length: 50 }, (_, i) => ({ fail_attempts: 1, letter: i })), '--queue', 'mail', '--max-attempts', '1');
  const hostilePayload = {
    script: '<script>document.title="pwned-script"</script>',
    img: '"><img src=x onerror="document.title=\'pwned-img\'">',
    big: 'x'.repeat(1 << 20),
  };
  const hostileJob = enqueueMany('echo', [hostilePayload], '--queue', 'hostile', '--max-attempts', '1')[0];
  const hostileError = enqueue('ui_hostile', { arg: '<b>bold?</b>' }, '--queue', 'hostile');
  const scheduled = enqueueMany('echo', [{ later: 1 }, { later: 2 }, { later: 3 }], '--queue', 'later', '--delay', '1h');
  const retryable = enqueue('echo', { fail: 'retryable' }, '--queue', 'flaky', '--retry-schedule', '3600', '--max-attempts', '5');
  const toCancel = enqueue('echo', { cancel: 'me' }, '--queue', 'later', '--delay', '1h');
  runner(['cancel', String(toCancel)]);
  // Every job above was created before this instant, the one below after it (the Jobs list's
  // time range, created_at for live jobs).
  await sleep(20);
  const createdMark = new Date().toISOString();
  await sleep(20);
  const pausable = enqueueMany('echo', [{ p: 0 }], '--queue', 'pausable', '--delay', '1h');
  log('enqueued', completed.length + reports.length + dead.length + 8, 'jobs');

  const w = await startProcess(['--plugins', pluginDir, '--http', '127.0.0.1:0', '--poll-interval', '200ms', '--concurrency', '6', '--config', config],
                               { ...env, RUNNER_API_TOKEN: TOKEN });
  const base = `http://127.0.0.1:${w.port}`;
  const get = async (p) => { const r = await fetch(base + p); assert.strictEqual(r.status, 200, p); return r.json(); };
  await waitFor('50 dead letters in mail', async () => (await get('/api/v1/dlq/count?queue=mail')).count === 50);
  await waitFor('the first 40 completed', async () => {
    const r = await get('/api/v1/jobs?state=completed&limit=500');
    return r.jobs.filter((j) => j.kind === 'echo' && j.queue !== 'cron').length >= 40;
  });
  await waitFor('the retryable job', async () => (await get('/api/v1/jobs/' + retryable)).state === 'retryable');
  await waitFor('the hostile dead letters', async () => (await get('/api/v1/jobs/' + hostileError)).state === 'discarded' &&
                                                         (await get('/api/v1/jobs/' + hostileJob)).state === 'completed');
  log('jobs in every state; runner on port', w.port);

  browser = await puppeteer.launch({
    executablePath: CHROMIUM, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync',
           '--no-first-run', '--disable-dev-shm-usage', '--user-data-dir=' + path.join(tmp, 'chromium-profile')],
  });
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  // In-page waits poll on a timer, not on animation frames (puppeteer's default): a frame-polled
  // wait once never saw a page that showed what it waited for.
  const waitForFunction = page.waitForFunction.bind(page);
  page.waitForFunction = (fn, opts, ...args) => waitForFunction(fn, { polling: 100, ...(opts || {}) }, ...args);
  const problems = [];
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('console', (m) => { if (/Content Security Policy|Refused to/.test(m.text())) problems.push('CSP: ' + m.text()); });
  page.on('dialog', (d) => { problems.push('unexpected dialog: ' + d.message()); d.dismiss(); });
  const shot = async (name) => { if (SHOTS) { fs.mkdirSync(SHOTS, { recursive: true }); await page.screenshot({ path: path.join(SHOTS, name + '.png'), fullPage: true }); } };
  // A fresh load each time (the same hash again would not re-render); sessionStorage stays.
  const go = async (hash) => {
    await page.goto('about:blank');
    await page.goto(`${base}/ui/#/${hash}`, { waitUntil: 'domcontentloaded' });
  };
  const rowIds = () => page.$$eval('table.jobs tbody tr', (trs) => trs.map((t) => Number(t.dataset.id)));
  const flashText = () => page.$eval('#flash', (f) => (f.hidden ? '' : f.textContent));
  // A click on a button of a table the page re-renders every 2 s: found and clicked in one task
  // of the page (an element handle taken first could be replaced before the click lands).
  const clickNow = async (p, sel) => { await p.waitForSelector(sel); await p.$eval(sel, (b) => b.click()); };

  // ---- Overview ----
  await go('overview');
  await page.waitForFunction(() => document.querySelectorAll('.cards .card').length >= 8 && document.querySelector('main table'));
  await page.waitForFunction(() => document.querySelectorAll('svg.chart rect').length > 0);
  const ovText = await page.$eval('main', (m) => m.textContent);
  for (const q of ['mail', 'later', 'pausable', 'flaky']) assert(ovText.includes(q), 'overview lists queue ' + q);
  const stamp1 = await page.$eval('h1 .muted', (e) => e.textContent);
  await page.waitForFunction((s) => document.querySelector('h1 .muted').textContent !== s, { timeout: 10000 }, stamp1);  // live
  await shot('overview');
  log('overview renders and refreshes itself');

  // ---- Jobs: tabs and filters narrow the list ----
  await go('jobs?state=completed');
  await page.waitForSelector('table.jobs tbody tr');
  const all = await rowIds();
  assert(all.length >= 40, 'completed jobs listed: ' + all.length);
  await page.type('input[name=queue]', 'reports');
  await page.click('form.filters button[type=submit]');
  await page.waitForFunction(() => location.hash.includes('queue=reports') && document.querySelectorAll('table.jobs tbody tr').length === 10);
  assert.deepStrictEqual((await rowIds()).sort(), [...reports].sort());
  await page.type('input[name=q]', 'NEEDLE-in');
  await page.click('form.filters button[type=submit]');
  await page.waitForFunction(() => location.hash.includes('q=NEEDLE') && document.querySelectorAll('table.jobs tbody tr').length === 1);
  assert.deepStrictEqual(await rowIds(), [reports[3]]);
  await go('jobs?state=scheduled');
  await page.waitForFunction(() => document.querySelectorAll('table.jobs tbody tr').length >= 4);
  // A time range narrows the list: scheduled jobs created before / from an instant.
  await go('jobs' + q({ state: 'scheduled', since: createdMark }));
  await page.waitForFunction(() => document.querySelectorAll('table.jobs tbody tr').length >= 1);
  assert.deepStrictEqual(await rowIds(), pausable);
  assert.strictEqual(await page.$eval('input[name=since]', (e) => e.value), toLocal(createdMark), 'the form shows the range');
  await go('jobs' + q({ state: 'scheduled', before: createdMark }));
  await page.waitForFunction(() => document.querySelectorAll('table.jobs tbody tr').length >= 1);
  assert.deepStrictEqual((await rowIds()).sort(), [...scheduled].sort());
  await go('jobs' + q({ state: 'scheduled', since: createdMark, before: new Date(Date.parse(createdMark) + 1).toISOString() }));
  await page.waitForFunction(() => /No scheduled job matches/.test(document.querySelector('main').textContent));
  await go('jobs?state=completed&limit=50');
  await page.waitForSelector('table.jobs tbody tr');
  await shot('jobs');
  // Keyset pages: "Next page" shows the next jobs, none twice.
  await go('jobs?state=completed&limit=20');
  await page.waitForSelector('#next');
  const first = await rowIds();
  await page.click('#next');
  await page.waitForFunction((ids) => { const r = [...document.querySelectorAll('table.jobs tbody tr')].map((t) => Number(t.dataset.id)); return r.length && !r.includes(ids[0]); }, {}, first);
  const second = await rowIds();
  assert(second.every((id) => !first.includes(id)), 'pages do not overlap');
  log('jobs list: tabs, filters, search, time range and keyset pages');

  // ---- a job's page: progress moves while it runs; dependencies graph ----
  // A long job (progress every 1.5 s) with a child waiting for it.
  const longJob = enqueue('ui_progress', { arg: '1500' }, '--queue', 'slow', '--lock-key', 'report:<b>42</b>');
  const child = enqueue('echo', { child: 1 }, '--queue', 'slow', '--depends-on', String(longJob));
  await waitFor('the long job to run', async () => (await get('/api/v1/jobs/' + longJob)).state === 'running');
  // It holds its lock key while it runs: the locks endpoint and the Queues page show it.
  const locks = (await get('/api/v1/locks')).locks;
  assert.deepStrictEqual(locks, [{ lock_key: 'report:<b>42</b>', running: 1, limit: 1, job_ids: [longJob] }]);
  await go('queues');
  await page.waitForFunction(() => [...document.querySelectorAll('main table tbody tr')].some((r) => /report:<b>42<\/b>/.test(r.textContent)));
  const lockRow = await page.$$eval('main table tbody tr', (trs) => trs.filter((r) => /report:/.test(r.textContent))
    .map((r) => [r.cells[0].textContent, r.cells[1].textContent, [...r.cells[2].querySelectorAll('a')].map((a) => a.getAttribute('href'))])[0]);
  assert.deepStrictEqual(lockRow, ['report:<b>42</b>', '1 / 1', ['#/job/' + longJob]]);
  assert.strictEqual(await page.$$eval('main b', (b) => b.length), 0, 'the lock key is text, not markup');
  await go('job/' + longJob);
  await page.waitForSelector('#job-progress .pct');
  const pct = () => page.$eval('#job-progress .pct', (e) => parseInt(e.textContent, 10));
  const p1 = await pct();
  await page.waitForFunction((p) => { const e = document.querySelector('#job-progress .pct'); return e && parseInt(e.textContent, 10) > p; }, { timeout: 15000 }, p1);
  const p2 = await pct();
  assert(p2 > p1, `progress moved ${p1} -> ${p2}`);
  await page.waitForSelector('svg.deps a');
  const nodes = await page.$$eval('svg.deps .nid', (e) => e.map((x) => x.textContent));
  assert.deepStrictEqual(nodes.sort(), ['#' + child, '#' + longJob].sort());
  // The graph follows the jobs while the page is open: when the job completes and its child
  // then runs, the nodes say so (no reload), as the header does.
  const nodeStates = () => page.$$eval('svg.deps a', (as) => Object.fromEntries(as.map((a) => [a.querySelector('.nid').textContent, a.querySelector('.nstate').textContent])));
  assert.strictEqual((await nodeStates())['#' + longJob], 'running');
  await page.waitForFunction((l, c) => {
    const st = Object.fromEntries([...document.querySelectorAll('svg.deps a')].map((a) => [a.querySelector('.nid').textContent, a.querySelector('.nstate').textContent]));
    return st['#' + l] === 'completed' && st['#' + c] === 'completed' && /completed/.test(document.querySelector('main h1').textContent);
  }, { timeout: 40000 }, longJob, child);
  assert.strictEqual(await pct(), 100);
  await shot('job');
  log(`job page: progress ${p1}% -> ${p2}% -> 100% without a reload; the dependency graph followed the job and its child to completed`);

  // ---- a job's webhook deliveries: a loopback receiver ----
  // The job waits in a paused queue while its page is opened (no delivery yet); the queue is
  // resumed from the command line, the job runs and its webhook is delivered: the page must show
  // the delivery without a reload. (Holding the receiver's answer until the page showed the
  // delivery in flight raced the runner's 10 s webhook timeout on a loaded machine.)
  const hooks = [];
  const receiver = http.createServer((req, res) => {
    let b = '';
    req.on('data', (d) => { b += d; });
    req.on('end', () => { hooks.push({ url: req.url, body: b }); res.writeHead(204); res.end(); });
  });
  await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
  try {
    const hookUrl = `http://127.0.0.1:${receiver.address().port}/hooks/ui`;
    runner(['queue', 'pause', 'hooks']);
    const hooked = enqueue('echo', { hooked: 1 }, '--queue', 'hooks', '--webhook', hookUrl);
    await go('job/' + hooked);
    const pageText = () => page.$eval('body', (b) => b.textContent);
    await waitFor(`job ${hooked}'s page showing it available in the paused queue`,
                  async () => /available/.test(await page.$eval('main h1', (e) => e.textContent)) || undefined);
    const before = await page.$eval('body', (b) => b.textContent);
    assert.ok(!/delivered/.test(before), 'no delivery shown before the job ran');
    runner(['queue', 'resume', 'hooks']);
    await waitFor('the webhook POST', async () => hooks.some((x) => JSON.parse(x.body).job.id === hooked));
    await waitFor(`job ${hooked}'s page showing it completed and its webhook delivered, without a reload`,
                  async () => {
                    const head = await page.$eval('main h1', (e) => e.textContent);
                    const hooksText = await page.$eval('#webhooks tbody', (e) => e.textContent).catch(() => '');
                    if (/completed/.test(head) && /delivered/.test(hooksText)) return true;
                    throw new Error('the page showed: ' + (await pageText()).slice(0, 1500));
                  });
    const cells = await page.$$eval('#webhooks tbody tr', (trs) => trs.map((t) => [...t.cells].map((c) => c.textContent)));
    assert.strictEqual(cells.length, 1, JSON.stringify(cells));
    assert.strictEqual(cells[0][1], 'job.completed');
    assert.strictEqual(cells[0][2], hookUrl);
    assert.strictEqual(cells[0][3], 'delivered');
    assert.strictEqual(cells[0][4], '1');
    assert.strictEqual(cells[0][5], '204');
    log('job page: opened while the job waited in a paused queue, then showed its webhook delivered (204) without a reload');
  } finally {
    receiver.close();
  }

  // ---- hostile payloads and errors render inert ----
  const inert = async () => {
    assert.strictEqual(await page.title(), 'jobrunner', 'title untouched by injected script');
    assert.strictEqual(await page.$$eval('main img', (i) => i.length), 0, 'no <img> injected');
    const scripts = await page.$$eval('script', (s) => s.map((x) => x.getAttribute('src')));
    assert.deepStrictEqual(scripts, ['core.js', 'overview.js', 'jobs.js', 'admin.js']);
  };
  await go('job/' + hostileJob);
  await page.waitForSelector('#payload');
  assert(await page.$eval('main', (m) => m.textContent.includes('Show all')), 'a 1 MB payload is cut until asked');
  await page.$$eval('main button', (bs) => bs.find((b) => b.textContent.startsWith('Show all')).click());
  await page.waitForFunction(() => document.querySelector('#payload').textContent.length > 1000000);
  const payloadText = await page.$eval('#payload', (e) => e.textContent);
  assert(payloadText.includes('<script>document.title=\\"pwned-script\\"</script>'), 'markup shown as text');
  assert(payloadText.includes('"><img src=x onerror=\\"document.title='), 'attribute injection shown as text');
  await inert();
  await go('job/' + hostileError);
  await page.waitForSelector('#attempts td.err');
  const errText = await page.$eval('#attempts td.err', (e) => e.textContent);
  assert(errText.includes("<script>document.title='pwned-error'</script>"), 'error markup as text');
  assert(errText.includes('\uFFFD'), 'bytes that are not UTF-8 shown as U+FFFD: ' + errText);
  await inert();
  await shot('hostile');
  await go('jobs?state=completed&queue=hostile');
  await page.waitForSelector('table.jobs tbody tr');
  await inert();
  await page.click('nav a[data-page=overview]');
  await page.waitForFunction(() => document.querySelectorAll('.cards .card').length >= 8);
  log('hostile payload and error render inert; the page stays usable');

  // ---- changes without the token are refused, and the page says why ----
  await go('dlq?queue=mail');
  await page.waitForFunction(() => document.querySelectorAll('table.jobs tbody tr').length === 50);
  await page.click('#select-page');
  await page.click('#purge-selected');
  await page.waitForSelector('#confirm[open]');
  assert(/Purge 50 dead letters\?/.test(await page.$eval('#confirm-text', (e) => e.textContent)));
  await page.click('#confirm-ok');
  await page.waitForFunction(() => !document.querySelector('#flash').hidden);
  const refused = await flashText();
  assert(/Refused \(401\): missing Authorization/.test(refused) && /Enter the API token/.test(refused), refused);
  assert.strictEqual((await get('/api/v1/dlq/count?queue=mail')).count, 50, 'nothing purged');
  const direct = await page.evaluate(async () => (await fetch('/api/v1/dlq/purge', { method: 'POST', headers: { 'Authorization': 'Bearer ui-test-token' }, body: '{"ids":[1]}' })).status);
  assert.strictEqual(direct, 403, 'a POST without the CSRF header is refused');
  log('without the token: refused (401) and said why; without the CSRF header: 403');

  // ---- with the token: bulk replay of 50 dead letters re-runs them ----
  await page.type('#token', TOKEN);
  await page.click('#token-save');
  assert.strictEqual(await page.evaluate(() => sessionStorage.getItem('jr_token')), TOKEN);
  await go('dlq?queue=mail');
  await page.waitForFunction(() => document.querySelectorAll('table.jobs tbody tr').length === 50);
  await page.click('#select-page');
  await page.waitForFunction(() => document.querySelector('.actions span').textContent === '50 selected');
  await page.click('#replay-selected');
  await page.waitForSelector('#confirm[open]');
  assert(/Replay 50 dead letters\?/.test(await page.$eval('#confirm-text', (e) => e.textContent)));
  await shot('dead-letters');
  await page.click('#confirm-ok');
  await page.waitForFunction(() => /Replayed 50 dead letters/.test(document.querySelector('#flash').textContent));
  await waitFor('the 50 replayed jobs to complete', async () => {
    const states = await Promise.all(dead.map((id) => get('/api/v1/jobs/' + id)));
    return states.every((j) => j.state === 'completed' && j.attempt === 2);
  });
  assert.strictEqual((await get('/api/v1/dlq/count?queue=mail')).count, 0);
  log('bulk replay of 50 dead letters: all completed on attempt 2');

  // ---- Queues: pause stops claiming, resume starts it again; rate limits ----
  // A job holding a lock key meanwhile (10 s), for the page's lock table in the screenshot.
  const locker = enqueue('ui_progress', { arg: '1000' }, '--queue', 'slow', '--lock-key', 'nightly-export');
  await waitFor('the locking job to run', async () => (await get('/api/v1/jobs/' + locker)).state === 'running');
  await go('queues');
  await page.waitForSelector('tr[data-queue=pausable] button');
  await clickNow(page, 'tr[data-queue=pausable] button');
  await page.waitForFunction(() => /paused/.test(document.querySelector('tr[data-queue=pausable]').textContent));
  const waiting = enqueueMany('echo', [1, 2, 3, 4, 5].map((i) => ({ paused: i })), '--queue', 'pausable');
  // A job of another queue enqueued after them completes: the runner claimed since, and passed
  // over the paused queue's older jobs.
  for (let i = 0; i < 3; ++i) {
    const probe = enqueue('echo', { probe: i }, '--queue', 'probe');
    await waitFor('a later job of another queue to complete', async () => (await get('/api/v1/jobs/' + probe)).state === 'completed');
  }
  for (const id of waiting) assert.strictEqual((await get('/api/v1/jobs/' + id)).state, 'available', 'paused: not claimed');
  await page.type('#limit-name', 'pausable');
  await page.type('#limit-rate', '50');
  await page.click('#limit-form button');
  await page.waitForSelector('tr[data-key="queue:pausable"]');
  await page.waitForFunction(() => /nightly-export/.test(document.querySelector('main').textContent));
  await shot('queues');
  await clickNow(page, 'tr[data-key="queue:pausable"] button');
  await page.waitForFunction(() => !document.querySelector('tr[data-key="queue:pausable"]'));
  await clickNow(page, 'tr[data-queue=pausable] button');
  await waitFor('the paused queue to drain after resume', async () => {
    const states = await Promise.all(waiting.map((id) => get('/api/v1/jobs/' + id)));
    return states.every((j) => j.state === 'completed');
  });
  log('pause stopped claiming while 3 later jobs of another queue ran; resume drained the queue; limit set and removed');

  // ---- Cron and Runners ----
  await go('cron');
  await page.waitForFunction(() => /heartbeat/.test(document.querySelector('main').textContent) && document.querySelector('ul.ticks a'));
  await shot('cron');
  await go('runners');
  await page.waitForFunction(() => document.querySelector('table.plugins') && /ui_dashboard/.test(document.querySelector('main').textContent));
  const runnersText = await page.$eval('main', (m) => m.textContent);
  assert(/sandbox/.test(runnersText) && /layers/.test(runnersText), 'plugin sandbox state shown');
  const grants = await page.$$eval('table.plugins tbody tr', (trs) => Object.fromEntries(trs.map((t) => [t.cells[0].firstChild.textContent, t.cells[8].textContent])));
  assert.deepStrictEqual(grants, { echo: 'none', ui_dashboard: 'enqueue echo' }, 'grants of the trust decision');
  await shot('runners');
  log('cron entries with their ticks and jobs; runners with plugins and sandbox layers');
  await waitFor('the locking job to finish', async () => (await get('/api/v1/jobs/' + locker)).state === 'completed', 30000);

  // ---- `runner ui`: dashboard only, no token configured: read-only, says why ----
  const ui = await startProcess(['ui', '--http', '127.0.0.1:0'], env);
  const page2 = await browser.newPage();
  page2.on('pageerror', (e) => problems.push('page error (runner ui): ' + e.message));
  await page2.setViewport({ width: 1280, height: 900 });
  await page2.goto(`http://127.0.0.1:${ui.port}/ui/#/queues`, { waitUntil: 'domcontentloaded' });
  await page2.waitForFunction(() => /no API token is configured/.test(document.querySelector('#mode').textContent));
  await page2.waitForSelector('tr[data-queue=later] button');
  await clickNow(page2, 'tr[data-queue=later] button');
  await page2.waitForFunction(() => !document.querySelector('#flash').hidden);
  const ro = await page2.$eval('#flash', (f) => f.textContent);
  assert(/Refused \(403\): state-changing endpoints are disabled: no API token is configured/.test(ro), ro);
  assert(!(await (await fetch(`http://127.0.0.1:${ui.port}/api/v1/overview`)).json()).queues.find((q) => q.queue === 'later').paused);
  await page2.goto(`http://127.0.0.1:${ui.port}/ui/#/runners`, { waitUntil: 'domcontentloaded' });
  await page2.waitForFunction(() => /ui_dashboard/.test(document.querySelector('main').textContent));
  log('runner ui: shows the runner of another process; without a token: refused (403) and says why');

  assert.deepStrictEqual(problems, []);
  await browser.close();
  browser = null;
  log('all checks passed');
}

async function cleanup() {
  if (browser) await browser.close().catch(() => {});
  const exited = (c) => (c.exitCode !== null || c.signalCode !== null ? Promise.resolve()
                                                                      : new Promise((r) => c.once('exit', r)));
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  await Promise.race([Promise.all(children.map(exited)), sleep(30000)]);
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  cp.spawnSync(RUNNER, ['--data-dir', dataDir, 'db', 'stop'], { timeout: 30000 });
  fs.rmSync(tmp, { recursive: true, force: true, maxRetries: 5 });
}

main().then(async () => { await cleanup(); process.exit(0); }, async (e) => {
  console.error('FAILED:', e && e.stack || e);
  for (const c of children) { try { console.error('--- log of', c.spawnargs.slice(1).join(' '), '\n' + fs.readFileSync(c.logFile, 'utf8').split('\n').slice(-30).join('\n')); } catch (x) { /* none */ } }
  await cleanup();
  process.exit(1);
});
