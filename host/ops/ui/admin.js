// Queues (pause/resume, rate limits, held lock keys), Cron, Runners and plugins.
'use strict';

JR.pages.queues = (main) => {
  const queues = h('div', { class: 'panel' });
  const limits = h('div', { class: 'panel' });
  const locks = h('div', { class: 'panel' });
  const keyType = h('select', { 'aria-label': 'limit on' }, h('option', { value: 'queue' }, 'queue'), h('option', { value: 'kind' }, 'kind'));
  const keyName = h('input', { placeholder: 'name', id: 'limit-name', required: true });
  const rate = h('input', { placeholder: 'jobs per second', id: 'limit-rate', type: 'number', step: 'any', min: '0', required: true });
  const burst = h('input', { placeholder: 'burst (optional)', id: 'limit-burst', type: 'number', step: 'any', min: '1' });
  const form = h('form', { class: 'filters', id: 'limit-form' }, h('label', {}, 'limit ', keyType), keyName, rate, burst,
                 h('button', { type: 'submit' }, 'Set limit'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = { key: keyType.value + ':' + keyName.value.trim(), rate: Number(rate.value) };
    if (burst.value) body.burst = Number(burst.value);
    if (await mutate('/api/v1/limits', body, 'Rate limit ' + body.key + ' set.')) refresh();
  });
  append(main, h('h1', {}, 'Queues'), queues, h('h2', {}, 'Rate limits'), form, limits, h('h2', {}, 'Lock keys held by running jobs'), locks);
  const refresh = async () => {
    const [o, l, k] = await Promise.all([api('/api/v1/overview'), api('/api/v1/limits'), api('/api/v1/locks')]);
    const live = (qu) => ['waiting', 'scheduled', 'available', 'running', 'retryable'].reduce((a, st) => a + (qu.counts[st] || 0), 0);
    clear(queues).append(o.queues.length ? h('table', {}, h('thead', {}, h('tr', {}, ['queue', 'state', 'available', 'running', 'live jobs', ''].map((c) => h('th', {}, c)))),
      h('tbody', {}, o.queues.map((qu) => h('tr', { 'data-queue': qu.queue }, h('td', {}, link('#/jobs' + q({ state: 'available', queue: qu.queue }), qu.queue)),
        h('td', {}, qu.paused ? h('span', { class: 'badge st-paused' }, 'paused') : h('span', { class: 'badge st-completed' }, 'active')),
        h('td', { class: 'num' }, fmtCount(qu.counts.available, qu.estimated.includes('available'))),
        h('td', { class: 'num' }, fmtNum(qu.counts.running)), h('td', { class: 'num' }, fmtNum(live(qu))),
        h('td', {}, h('button', { class: qu.paused ? '' : 'danger', onclick: async () => {
          const path = qu.paused ? '/api/v1/queues/resume' : '/api/v1/queues/pause';
          if (await mutate(path, { queue: qu.queue }, 'Queue ' + qu.queue + (qu.paused ? ' resumed.' : ' paused: no runner claims from it.'))) refresh();
        } }, qu.paused ? 'Resume' : 'Pause'))))))
      : h('p', { class: 'muted' }, 'No queue has live jobs.'));
    clear(limits).append(l.limits.length ? h('table', {}, h('thead', {}, h('tr', {}, ['key', 'rate (jobs/s)', 'burst', 'tokens now', ''].map((c) => h('th', {}, c)))),
      h('tbody', {}, l.limits.map((x) => h('tr', { 'data-key': x.key }, h('td', { class: 'mono' }, x.key), h('td', { class: 'num' }, x.rate), h('td', { class: 'num' }, x.burst),
        h('td', { class: 'num' }, Number(x.tokens).toFixed(1)),
        h('td', {}, h('button', { class: 'danger', onclick: async () => {
          if (await mutate('/api/v1/limits/remove', { key: x.key }, 'Rate limit ' + x.key + ' removed.')) refresh();
        } }, 'Remove'))))))
      : h('p', { class: 'muted' }, 'No rate limit.'));
    clear(locks).append(k.locks.length ? h('table', {}, h('thead', {}, h('tr', {}, ['lock key', 'running / limit', 'jobs'].map((c) => h('th', {}, c)))),
      h('tbody', {}, k.locks.map((x) => h('tr', {}, h('td', { class: 'mono' }, x.lock_key), h('td', { class: 'num' }, x.running + ' / ' + x.limit),
        h('td', {}, x.job_ids.map((id) => [jobLink(id), ' '])))))) : h('p', { class: 'muted' }, 'No lock key is held.'));
  };
  poll(refresh, 2000);
};

JR.pages.cron = (main) => {
  const list = h('div', { class: 'panel' });
  append(main, h('h1', {}, 'Cron'), list);
  poll(async () => {
    const c = await api('/api/v1/cron');
    clear(list).append(c.entries.length ? h('table', {}, h('thead', {}, h('tr', {}, ['name', 'schedule', 'kind', 'queue', 'source', 'next run', 'last run', 'recent ticks → jobs'].map((x) => h('th', {}, x)))),
      h('tbody', {}, c.entries.map((e) => h('tr', {}, h('td', {}, e.name), h('td', { class: 'mono' }, e.schedule + ' (' + e.timezone + ')'),
        h('td', {}, e.kind), h('td', {}, e.queue || '(kind default)'), h('td', {}, e.source),
        h('td', {}, e.next_run_at ? fmtTime(e.next_run_at) + ' (' + fmtAge(-since(e.next_run_at)) + ')' : ''),
        h('td', {}, e.last_run_at ? fmtTime(e.last_run_at) : 'never'),
        h('td', {}, e.runs.length ? h('ul', { class: 'ticks' }, e.runs.map((r) => h('li', {}, r.tick + ' → ', jobLink(r.job_id), ' ', badge(r.state)))) : '')))))
      : h('p', { class: 'muted' }, 'No periodic job ([[cron]] in the config or a plugin manifest).'));
  }, 2000);
};

function layerSummary(layers) {
  if (!layers || typeof layers !== 'object') return '';
  return h('details', {}, h('summary', {}, Object.keys(layers).length + ' layers'),
    h('dl', { class: 'kv small' }, Object.entries(layers).map(([k, v]) => [h('dt', {}, k),
      h('dd', { class: 'mono' }, typeof v === 'object' ? (v && v.status ? v.status + ' ' : '') + JSON.stringify(v) : String(v))])));
}

// What the operator granted a plugin (the trust model): a database, other kinds to enqueue, host
// environment variables; 'none' when nothing.
function grantSummary(g) {
  if (!g || typeof g !== 'object') return '';
  const parts = [];
  if (g.database === true) parts.push('database');
  if (Array.isArray(g.enqueue_kinds) && g.enqueue_kinds.length) parts.push('enqueue ' + g.enqueue_kinds.join(', '));
  if (Array.isArray(g.env) && g.env.length) parts.push('env ' + g.env.join(', '));
  return parts.length ? parts.join('; ') : 'none';
}

JR.pages.runners = (main) => {
  const list = h('div', {});
  append(main, h('h1', {}, 'Runners and plugins'), list);
  poll(async () => {
    const r = await api('/api/v1/runners');
    clear(list);
    if (!r.runners.length) list.append(h('p', { class: 'muted' }, 'No live runner (none heartbeated within a lease).'));
    for (const w of r.runners) {
      const d = w.details || {};
      const plugins = Array.isArray(d.plugins) ? d.plugins : [];
      const refused = Array.isArray(d.refused) ? d.refused : [];
      const restarts = (p) => Object.entries(p.restarts || {}).filter(([, n]) => n > 0).map(([k, n]) => k + ' ' + n).join(', ') || '0';
      list.append(h('section', { class: 'panel runner' },
        h('h2', { class: 'mono' }, w.id),
        kv([['host', w.host], ['pid', w.pid], ['kinds', (w.kinds || []).join(', ')], ['queues', (w.queues || []).length ? w.queues.join(', ') : 'all'],
            ['started', fmtTime(w.started_at)], ['heartbeat', fmtAge(w.heartbeat_age_seconds) + ' ago'], ['jobs done', fmtNum(w.jobs_done)],
            ['running', fmtNum(w.running)], ['connections', fmtNum(w.connections)], ['version', d.version]]),
        plugins.length ? h('table', { class: 'plugins' }, h('thead', {}, h('tr', {}, ['plugin', 'version', 'isolation', 'workers', 'started', 'jobs', 'restarts', 'quarantine', 'grants', 'layers'].map((c) => h('th', {}, c)))),
          h('tbody', {}, plugins.map((p) => h('tr', {}, h('td', {}, p.name, h('div', { class: 'muted mono small' }, String(p.sha256 || '').slice(0, 16))),
            h('td', {}, p.version), h('td', {}, badge(p.isolation)), h('td', { class: 'num' }, p.workers === undefined ? '' : p.workers),
            h('td', { class: 'num' }, p.workers_started === undefined ? '' : p.workers_started), h('td', { class: 'num' }, p.jobs === undefined ? '' : fmtNum(p.jobs)),
            h('td', {}, p.isolation === 'sandbox' ? restarts(p) : ''),
            h('td', {}, p.quarantined ? h('span', { class: 'badge st-discarded' }, 'quarantined') : (p.quarantines ? p.quarantines + ' past' : '')),
            h('td', { class: 'small' }, grantSummary(p.grants)),
            h('td', {}, layerSummary(p.layers))))))
          : h('p', { class: 'muted' }, 'Plugin details not published yet.'),
        refused.length ? [h('h3', {}, 'Refused plugins'), h('table', { class: 'refused' }, h('thead', {}, h('tr', {}, ['plugin', 'file', 'kind', 'reason'].map((c) => h('th', {}, c)))),
          h('tbody', {}, refused.map((x) => h('tr', {}, h('td', {}, x.name || '(unnamed)'), h('td', { class: 'mono' }, x.file), h('td', {}, x.kind || 'all'), h('td', { class: 'err' }, x.reason)))))] : ''));
    }
  }, 2000);
};
