// Overview: jobs per state per queue, throughput of the last hour, running jobs, oldest waiting
// job; refreshed every 2 s while the tab is visible.
'use strict';

const STATES = ['waiting', 'scheduled', 'available', 'running', 'retryable'];
const OUTCOMES = [['completed', 'c-ok'], ['retried', 'c-retry'], ['discarded', 'c-dead'], ['cancelled', 'c-cancel']];

// A stacked bar per minute (SVG, drawn here: no chart library).
function throughputChart(tp, nowIso) {
  const now = new Date(nowIso || Date.now());
  const end = Math.floor(now.getTime() / 60000) * 60000;
  const minutes = [];
  for (let i = 59; i >= 0; --i) minutes.push(new Date(end - i * 60000));
  const key = (d) => d.toISOString().replace('.000Z', '+00:00');
  const per = minutes.map((m) => OUTCOMES.map(([o]) => {
    const series = (tp.outcomes || {})[o] || {};
    return Number(series[key(m)] || 0);
  }));
  const max = Math.max(1, ...per.map((v) => v.reduce((a, b) => a + b, 0)));
  const W = 720, H = 160, pad = 30, bw = (W - pad) / 60;
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H + 20}`, role: 'img',
                         'aria-label': 'attempts finished per minute, last hour' });
  svg.append(s('line', { x1: pad, y1: H, x2: W, y2: H, class: 'axis' }));
  svg.append(s('text', { x: pad - 4, y: 10, class: 'tick', 'text-anchor': 'end' }, fmtNum(max)));
  svg.append(s('text', { x: pad - 4, y: H, class: 'tick', 'text-anchor': 'end' }, '0'));
  per.forEach((vals, i) => {
    let y = H;
    vals.forEach((v, k) => {
      if (!v) return;
      const bh = Math.max(1, (v / max) * (H - 10));
      y -= bh;
      svg.append(s('rect', { x: pad + i * bw + 1, y, width: Math.max(1, bw - 2), height: bh, class: OUTCOMES[k][1] },
                   s('title', {}, `${fmtTime(minutes[i].toISOString())}: ${OUTCOMES[k][0]} ${fmtNum(v)}`)));
    });
  });
  svg.append(s('text', { x: pad, y: H + 15, class: 'tick' }, '-60 min'));
  svg.append(s('text', { x: W, y: H + 15, class: 'tick', 'text-anchor': 'end' }, 'now'));
  const totals = OUTCOMES.map(([o, c], k) => h('span', { class: 'legend' }, h('i', { class: c }),
    o + ' ' + fmtNum(per.reduce((a, v) => a + v[k], 0))));
  return h('div', {}, svg, h('div', { class: 'legends' }, totals, ' in the last hour'));
}

JR.pages.overview = (main) => {
  const cards = h('div', { class: 'cards' });
  const chart = h('div', { class: 'panel' });
  const queues = h('div', { class: 'panel' });
  const running = h('div', { class: 'panel' });
  const stamp = h('span', { class: 'muted' });
  append(main, h('h1', {}, 'Overview ', stamp),
         cards,
         h('section', {}, h('h2', {}, 'Throughput (attempts finished per minute)'), chart),
         h('section', {}, h('h2', {}, 'Queues'), queues),
         h('section', {}, h('h2', {}, 'Running now'), running));
  poll(async () => {
    const o = await api('/api/v1/overview');
    const t = o.totals;
    let oldest = null;
    for (const qu of o.queues) {
      if (qu.oldest_available) {
        const age = since(qu.oldest_available.run_at);
        if (oldest === null || age > oldest.age) oldest = { age, queue: qu.queue, id: qu.oldest_available.id };
      }
    }
    clear(cards);
    const card = (label, value, hash, cls) => h('a', { class: 'card ' + (cls || ''), href: hash }, h('b', {}, value), h('span', {}, label));
    const est = (st) => o.queues.some((qu) => qu.estimated.includes(st));
    for (const st of STATES) card && cards.append(card(st, fmtCount(t[st], est(st)), '#/jobs?state=' + st, 'st-' + st));
    cards.append(card('dead letters', fmtCount(t.discarded, est('discarded')), '#/dlq', 'st-discarded'));
    cards.append(card('completed', fmtCount(t.completed, est('completed')), '#/jobs?state=completed', 'st-completed'));
    cards.append(card('oldest waiting', oldest ? fmtAge(oldest.age) : '–', oldest ? '#/job/' + oldest.id : '#/jobs?state=available'));
    cards.append(card('runners', fmtNum(o.runners), '#/runners'));
    clear(chart).append(throughputChart(o.throughput, o.now));
    const rows = o.queues.map((qu) => {
      const cell = (st) => {
        const n = qu.counts[st] || 0;
        const e = qu.estimated.includes(st);
        const hash = st === 'discarded' ? '#/dlq' + q({ queue: qu.queue }) : '#/jobs' + q({ state: st, queue: qu.queue });
        return h('td', { class: 'num' }, n ? link(hash, fmtCount(n, e)) : '0');
      };
      const old = qu.oldest_available;
      return h('tr', {}, h('td', {}, link('#/jobs' + q({ state: 'available', queue: qu.queue }), qu.queue),
                         qu.paused ? h('span', { class: 'badge st-paused' }, 'paused') : '',
                         qu.rate_limited ? h('span', { class: 'badge st-limited' }, 'rate limited') : ''),
               STATES.map(cell), cell('discarded'), cell('completed'), cell('cancelled'),
               h('td', { class: 'num' }, old ? link('#/job/' + old.id, fmtAge(since(old.run_at))) : ''));
    });
    clear(queues).append(o.queues.length
      ? h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'queue'), STATES.map((st) => h('th', { class: 'num' }, st)),
                                          h('th', { class: 'num' }, 'dead'), h('th', { class: 'num' }, 'completed'),
                                          h('th', { class: 'num' }, 'cancelled'), h('th', { class: 'num' }, 'oldest waiting'))),
          h('tbody', {}, rows))
      : h('p', { class: 'muted' }, 'No queue has jobs.'));
    if (o.totals_estimated) {
      queues.append(h('p', { class: 'muted', id: 'estimate-note' }, '≈: more than ' + fmtNum(o.count_cap) +
        ' jobs (or, for completed jobs, more than that many in all): the planner\'s estimate, which follows ANALYZE.'));
    }
    clear(running).append(o.running.length
      ? h('table', {}, h('thead', {}, h('tr', {}, ['job', 'kind', 'queue', 'attempt', 'running for', 'progress', 'runner'].map((c) => h('th', {}, c)))),
          h('tbody', {}, o.running.map((r) => h('tr', {}, h('td', {}, jobLink(r.id)), h('td', {}, r.kind), h('td', {}, r.queue),
            h('td', { class: 'num' }, r.attempt), h('td', {}, fmtAge(since(r.started_at))), h('td', {}, progressBar(r.progress)),
            h('td', { class: 'mono' }, r.worker_id || '')))))
      : h('p', { class: 'muted' }, 'Nothing is running.'));
    if (o.running_total > o.running.length) running.append(h('p', { class: 'muted' }, fmtNum(o.running_total) + ' running in all; ', link('#/jobs?state=running', 'see them all')));
    stamp.textContent = 'updated ' + new Date().toLocaleTimeString('en-GB');
  }, 2000);
};
