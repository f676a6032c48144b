// Jobs (list with filters and keyset pages), a job's page, and the dead letter queue.
'use strict';

const ALL_STATES = ['available', 'running', 'scheduled', 'retryable', 'waiting', 'completed', 'discarded', 'cancelled'];

// datetime-local value (local time) <-> ISO 8601 UTC for the API.
function toIso(local) { return local ? new Date(local).toISOString() : ''; }
function toLocal(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (isNaN(d)) return '';
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

// The filter form shared by Jobs and Dead letters; `go(params)` navigates.
function filterForm(params, go, opts) {
  const f = h('form', { class: 'filters', autocomplete: 'off' });
  const kind = h('input', { name: 'kind', placeholder: 'kind', list: 'kinds-list', value: params.kind || '' });
  const queue = h('input', { name: 'queue', placeholder: 'queue', value: params.queue || '' });
  const sinceI = h('input', { name: 'since', type: 'datetime-local', value: toLocal(params.since), 'aria-label': 'since' });
  const beforeI = h('input', { name: 'before', type: 'datetime-local', value: toLocal(params.before), 'aria-label': 'before' });
  const search = h('input', { name: 'q', placeholder: 'text in the payload', value: params.q || '' });
  const kinds = h('datalist', { id: 'kinds-list' });
  api('/api/v1/kinds').then((k) => { for (const x of k.kinds) kinds.append(h('option', { value: x.kind })); }).catch(() => {});
  append(f, kinds, h('label', {}, 'kind ', kind), h('label', {}, 'queue ', queue),
         h('label', {}, opts.timeLabel + ' from ', sinceI), h('label', {}, 'to ', beforeI),
         h('label', {}, 'search ', search), h('button', { type: 'submit' }, 'Filter'),
         h('button', { type: 'button', onclick: () => go({}) }, 'Clear'));
  f.addEventListener('submit', (e) => {
    e.preventDefault();
    go({ kind: kind.value.trim(), queue: queue.value.trim(), since: toIso(sinceI.value), before: toIso(beforeI.value), q: search.value });
  });
  return f;
}

// A page of jobs with "next page" by cursor; `select` adds checkboxes (dead letters).
function jobTable(res, opts) {
  const done = ['completed', 'discarded', 'cancelled'].includes(res.state);
  const cols = ['job', 'state', 'kind', 'queue', 'attempt', done ? 'finished' : res.state === 'running' ? 'started' : 'run at',
                done && res.state !== 'completed' ? 'error' : 'progress', 'payload'];
  const head = cols.map((c) => h('th', {}, c));
  if (opts.select) head.unshift(h('th', {}, opts.selectAll));
  const rows = res.jobs.map((j) => {
    const when = done ? fmtTime(j.finished_at) : res.state === 'running' ? fmtAge(since(j.started_at)) : fmtTime(j.run_at);
    const cells = [h('td', {}, jobLink(j.id)), h('td', {}, badge(j.state)), h('td', {}, j.kind), h('td', {}, j.queue),
                   h('td', { class: 'num' }, j.attempt + (j.max_attempts ? '/' + j.max_attempts : '')), h('td', {}, when),
                   h('td', { class: 'err' }, j.error ? (j.error_kind ? '[' + j.error_kind + '] ' : '') + j.error : progressBar(j.progress)),
                   h('td', { class: 'mono payload' }, j.payload_preview + (j.payload_bytes > 200 ? ' … (' + fmtBytes(j.payload_bytes) + ')' : ''))];
    const tr = h('tr', { 'data-id': j.id }, cells);
    if (opts.select) tr.prepend(h('td', {}, opts.select(j)));
    return tr;
  });
  return h('table', { class: 'jobs' }, h('thead', {}, h('tr', {}, head)), h('tbody', {}, rows));
}

function pager(res, params, base) {
  const p = h('div', { class: 'pager' });
  if (params.cursor) p.append(h('a', { class: 'button', href: base + q({ ...params, cursor: '' }) }, 'First page'));
  if (res.partial) {
    p.append(h('span', { class: 'muted' }, 'Searched ' + fmtNum(res.scan_limit) + ' jobs without filling the page. '));
    p.append(h('a', { class: 'button', id: 'continue', href: base + q({ ...params, cursor: res.next_cursor }) }, 'Continue searching'));
  } else if (res.next_cursor) {
    p.append(h('a', { class: 'button', id: 'next', href: base + q({ ...params, cursor: res.next_cursor }) }, 'Next page'));
  } else {
    p.append(h('span', { class: 'muted' }, 'End of the list.'));
  }
  return p;
}

JR.pages.jobs = (main, params) => {
  const state = ALL_STATES.includes(params.state) ? params.state : 'available';
  const go = (p) => { location.hash = '#/jobs' + q({ ...p, state }); };
  const tabs = h('div', { class: 'tabs' }, ALL_STATES.map((st) =>
    h('a', { href: '#/jobs' + q({ ...params, state: st, cursor: '' }), class: st === state ? 'active' : '' }, st)));
  const list = h('div', { class: 'panel' }, h('p', { class: 'muted' }, 'Loading…'));
  append(main, h('h1', {}, 'Jobs'), tabs,
         filterForm(params, go, { timeLabel: ['completed', 'discarded', 'cancelled'].includes(state) ? 'finished' : 'created' }), list);
  api('/api/v1/jobs' + q({ ...params, state, limit: params.limit || 50 })).then((res) => {
    clear(list).append(res.jobs.length ? jobTable(res, {}) : h('p', { class: 'muted' }, 'No ' + state + ' job matches.'),
                       pager(res, { ...params, state }, '#/jobs'),
                       h('p', { class: 'muted' }, 'Order: ' + res.order + '.'));
  }).catch((e) => { clear(list).append(h('p', { class: 'error' }, e.message)); });
};

// ---- dead letters ----
JR.pages.dlq = (main, params) => {
  const go = (p) => { location.hash = '#/dlq' + q(p); };
  const selected = new Set();
  const count = h('span', {}, '0 selected');
  const list = h('div', { class: 'panel' }, h('p', { class: 'muted' }, 'Loading…'));
  const boxes = [];
  const update = () => { count.textContent = selected.size + ' selected'; };
  const selectAll = h('input', { type: 'checkbox', 'aria-label': 'select all on this page', id: 'select-page', onchange: (e) => {
    for (const b of boxes) { b.checked = e.target.checked; b.dispatchEvent(new Event('change')); }
  } });
  const filter = { kind: params.kind, queue: params.queue, since: params.since, before: params.before };
  const bulk = async (action, ids) => {
    const verb = action === 'replay' ? 'Replay' : 'Purge';
    let n = ids ? ids.length : 0;
    let body;
    if (ids) {
      body = { ids };
    } else {
      const c = await api('/api/v1/dlq/count' + q(filter));
      n = Math.min(c.count, JR.meta ? JR.meta.max_bulk : 10000);
      if (!n) { flash('No dead letter matches.', 'error'); return; }
      body = { filter: Object.fromEntries(Object.entries(filter).filter(([, v]) => v)), limit: n };
      if (c.count > n) flash('Only the first ' + fmtNum(n) + ' of ' + (c.capped ? 'more than ' : '') + fmtNum(c.count) + ' can be handled at once.', 'error');
    }
    const what = action === 'replay' ? 'They run again now, each with at least one attempt left.' : 'They are deleted for good.';
    if (!await confirmAction(verb + ' ' + fmtNum(n) + ' dead letter' + (n === 1 ? '' : 's') + '? ' + what, verb + ' ' + fmtNum(n))) return;
    const r = await mutate('/api/v1/dlq/' + action, body,
      (r) => action === 'replay' ? 'Replayed ' + fmtNum(r.replayed) + ' dead letters.' : 'Purged ' + fmtNum(r.purged) + ' dead letters.');
    if (r) route();
  };
  const actions = h('div', { class: 'actions' },
    count,
    h('button', { id: 'replay-selected', onclick: () => selected.size && bulk('replay', [...selected]) }, 'Replay selected'),
    h('button', { id: 'purge-selected', class: 'danger', onclick: () => selected.size && bulk('purge', [...selected]) }, 'Purge selected'),
    h('button', { id: 'replay-all', onclick: () => bulk('replay', null) }, 'Replay all matching…'),
    h('button', { id: 'purge-all', class: 'danger', onclick: () => bulk('purge', null) }, 'Purge all matching…'));
  append(main, h('h1', {}, 'Dead letters'), filterForm(params, go, { timeLabel: 'dead-lettered' }), actions, list);
  api('/api/v1/jobs' + q({ ...params, state: 'discarded', limit: 100 })).then((res) => {
    const select = (j) => {
      const b = h('input', { type: 'checkbox', 'aria-label': 'select job ' + j.id, 'data-id': j.id, onchange: (e) => {
        if (e.target.checked) selected.add(j.id); else selected.delete(j.id);
        update();
      } });
      boxes.push(b);
      return b;
    };
    clear(list).append(res.jobs.length ? jobTable(res, { select, selectAll }) : h('p', { class: 'muted' }, 'No dead letter matches.'),
                       pager(res, params, '#/dlq'));
    if (params.q) list.append(h('p', { class: 'muted' }, 'The "all matching" actions ignore the payload search; select jobs to act on what the search found.'));
  }).catch((e) => { clear(list).append(h('p', { class: 'error' }, e.message)); });
};

// ---- a job's page ----
function kv(rows) {
  return h('dl', { class: 'kv' }, rows.filter((r) => r[1] !== null && r[1] !== undefined && r[1] !== '').map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

// The payload or result as text; a large one is cut at 64 KB until asked.
function jsonBlock(value, id) {
  const text = value === null || value === undefined ? 'null' : JSON.stringify(value, null, 2);
  const pre = h('pre', { class: 'json', id });
  const LIMIT = 65536;
  if (text.length <= LIMIT) { pre.textContent = text; return pre; }
  pre.textContent = text.slice(0, LIMIT);
  const more = h('button', { type: 'button', onclick: () => { pre.textContent = text; more.remove(); } },
                 'Show all ' + fmtBytes(text.length));
  return h('div', {}, pre, h('p', { class: 'muted' }, 'First ' + fmtBytes(LIMIT) + ' of ' + fmtBytes(text.length) + '. '), more);
}

// Parents above, the job, children below; each node links to its job.
function depGraph(job, deps) {
  const W = 720, rowH = 70, nodeW = 110, nodeH = 34;
  const rows = [deps.parents, [{ id: job.id, state: job.state, kind: job.kind, self: true }], deps.children];
  const svg = s('svg', { class: 'deps', viewBox: `0 0 ${W} ${rowH * 3}`, role: 'img', 'aria-label': 'dependencies' });
  const pos = rows.map((row, r) => row.map((n, i) => ({ n, x: (W / (row.length + 1)) * (i + 1), y: rowH * r + rowH / 2 })));
  const me = pos[1][0];
  for (const p of pos[0]) svg.append(s('line', { x1: p.x, y1: p.y + nodeH / 2, x2: me.x, y2: me.y - nodeH / 2, class: 'edge' }));
  for (const c of pos[2]) svg.append(s('line', { x1: me.x, y1: me.y + nodeH / 2, x2: c.x, y2: c.y - nodeH / 2, class: 'edge' }));
  for (const row of pos) {
    for (const { n, x, y } of row) {
      const g = s('a', { href: '#/job/' + encodeURIComponent(n.id) },
        s('rect', { x: x - nodeW / 2, y: y - nodeH / 2, width: nodeW, height: nodeH, rx: 5,
                    class: 'node st-' + String(n.state || 'pruned').replace(/[^a-z]/g, '') + (n.self ? ' self' : '') }),
        s('text', { x, y: y - 3, 'text-anchor': 'middle', class: 'nid' }, '#' + n.id),
        s('text', { x, y: y + 11, 'text-anchor': 'middle', class: 'nstate' }, (n.state || 'pruned')));
      svg.append(g);
    }
  }
  return svg;
}

JR.pages.job = (main, params) => {
  const id = params.id;
  const head = h('h1', {}, 'Job #' + id);
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  append(main, head, body);
  const extras = h('div', {});
  // Dependencies (their states change as parents and children run) and webhook deliveries (made
  // after the job finishes) are refreshed with the job, the graph at most every 2 s.
  let deps = null;
  let depsAt = 0;
  const renderExtras = (j) => {
    const hooks = Array.isArray(j.webhook) ? j.webhook : [];
    clear(extras).append(
      h('section', {}, h('h2', {}, 'Dependencies'), deps.parents.length || deps.children.length ? depGraph(j, deps) : h('p', { class: 'muted' }, 'No parents, no children.'),
        deps.more_children ? h('p', { class: 'muted' }, 'Only the first 100 children are shown.') : ''),
      h('section', {}, h('h2', {}, 'Webhook deliveries'), hooks.length ? h('table', { id: 'webhooks' }, h('thead', {}, h('tr', {}, ['delivery', 'event', 'url', 'state', 'tries', 'last status', 'last error'].map((c) => h('th', {}, c)))),
        h('tbody', {}, hooks.map((w) => h('tr', {}, h('td', {}, w.id), h('td', {}, w.event), h('td', { class: 'mono' }, w.url), h('td', {}, badge(w.state)),
          h('td', { class: 'num' }, w.attempts), h('td', {}, w.last_status === null ? '' : w.last_status), h('td', { class: 'err' }, w.last_error || '')))))
        : h('p', { class: 'muted' }, 'None.')));
  };
  const render = (j) => {
    const live = ['available', 'running', 'scheduled', 'retryable', 'waiting'].includes(j.state);
    const buttons = h('div', { class: 'actions' });
    if (!['running', 'completed', 'available'].includes(j.state)) {
      buttons.append(h('button', { id: 'job-retry', onclick: async () => { if (await mutate('/api/v1/jobs/' + j.id + '/retry', {}, 'Job ' + j.id + ' will run again now.')) route(); } }, 'Retry now'));
    }
    if (live) {
      buttons.append(h('button', { id: 'job-cancel', class: 'danger', onclick: async () => {
        if (!await confirmAction('Cancel job ' + j.id + '?', 'Cancel job')) return;
        if (await mutate('/api/v1/jobs/' + j.id + '/cancel', {}, 'Cancellation of job ' + j.id + ' requested.')) route();
      } }, j.state === 'running' ? 'Ask it to stop' : 'Cancel'));
    }
    const runs = [];
    for (const e of (Array.isArray(j.errors) ? j.errors : [])) {
      runs.push(h('tr', {}, h('td', { class: 'num' }, e.attempt), h('td', {}, fmtTime(e.at)), h('td', {}, badge(e.kind || 'error')),
                  h('td', { class: 'err' }, e.message), h('td', { class: 'mono' }, e.worker_id ? e.worker_id + (e.host ? ' @ ' + e.host : '') : '')));
    }
    if ((j.state === 'completed' || j.state === 'running') && j.worker_id) {
      runs.push(h('tr', {}, h('td', { class: 'num' }, j.attempt), h('td', {}, fmtTime(j.started_at)), h('td', {}, badge(j.state)), h('td', {}, ''),
                  h('td', { class: 'mono' }, j.worker_id + (j.worker_host ? ' @ ' + j.worker_host : ''))));
    }
    clear(head).append('Job #' + j.id + ' ', badge(j.state));
    clear(body).append(
      buttons,
      kv([['kind', link('#/jobs' + q({ state: j.state, kind: j.kind }), j.kind)], ['queue', link('#/jobs' + q({ state: j.state, queue: j.queue }), j.queue)],
          ['priority', j.priority], ['attempt', j.attempt + (j.max_attempts ? ' of ' + j.max_attempts : '')],
          ['created', fmtTime(j.created_at)], ['run at', fmtTime(j.run_at)], ['started', fmtTime(j.started_at)], ['finished', fmtTime(j.finished_at)],
          ['runner', j.worker_id ? j.worker_id + (j.worker_host ? ' @ ' + j.worker_host : '') : null],
          ['lease expires', fmtTime(j.lease_expires_at)], ['timeout', j.timeout_ms ? j.timeout_ms + ' ms' : null]]),
      h('section', {}, h('h2', {}, 'Progress'), j.progress ? h('div', { id: 'job-progress' }, progressBar(j.progress),
        h('span', { class: 'muted' }, ' at ' + fmtTime(j.progress.at))) : h('p', { class: 'muted', id: 'job-progress' }, 'No progress reported.')),
      h('section', {}, h('h2', {}, 'Attempts'), runs.length ? h('table', {}, h('thead', {}, h('tr', {}, ['attempt', 'at', 'outcome', 'error', 'runner'].map((c) => h('th', {}, c)))), h('tbody', { id: 'attempts' }, runs))
        : h('p', { class: 'muted' }, 'Not run yet.')),
      h('section', {}, h('h2', {}, 'Payload'), jsonBlock(j.payload, 'payload')),
      j.state === 'completed' ? h('section', {}, h('h2', {}, 'Result'), jsonBlock(j.result, 'result')) : '',
      extras);
    return live;
  };
  // Progress moves while it runs: the job every second; once it has finished, every 5 s (its
  // children run, its webhooks are delivered). The page body is rebuilt only when the job
  // changed (so an expanded payload stays expanded), the graph and the deliveries every time.
  let shown = '';
  let fetchedAt = 0;
  let finished = false;
  const t = poll(async () => {
    if (finished && Date.now() - fetchedAt < 5000) return;
    fetchedAt = Date.now();
    let j;
    try {
      j = await api('/api/v1/jobs/' + encodeURIComponent(id));
    } catch (e) {
      clear(body).append(h('p', { class: 'error' }, e.status === 404 ? 'No job with id ' + id + ' (it may have been pruned).' : e.message));
      t.stop();
      return;
    }
    const sig = [j.state, j.attempt, j.finished_at, JSON.stringify(j.progress || null)].join('|');
    if (sig !== shown) {
      finished = !render(j);
      shown = sig;
    }
    if (deps === null || Date.now() - depsAt >= 2000) {
      try {
        deps = await api('/api/v1/jobs/' + encodeURIComponent(id) + '/dependencies');
        depsAt = Date.now();
      } catch (e) {
        if (deps === null) { clear(extras).append(h('p', { class: 'error' }, e.message)); return; }
      }
    }
    renderExtras(j);
  }, 1000);
};
