// jobrunner dashboard: shared helpers, the API client, the token, the router.
// Every value from the server is inserted as text (text nodes, textContent), never as HTML.
'use strict';

const JR = {
  meta: null,
  pages: {},        // name -> function(params) rendering into #main, returning a cleanup or null
  timers: [],       // polling timers of the current page
  cleanup: null,
};

// ---- DOM ----
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, kids);
  return el;
}
function append(el, ...kids) {
  for (const c of kids.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const SVGNS = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...kids) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, String(v));
  }
  for (const c of kids.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }
function link(hash, ...kids) { return h('a', { href: hash }, ...kids); }
function jobLink(id) { return link('#/job/' + encodeURIComponent(id), '#' + id); }
function q(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== '') u.set(k, v);
  const t = u.toString();
  return t ? '?' + t : '';
}

// ---- formatting ----
function fmtNum(n) { return n === null || n === undefined ? '' : Number(n).toLocaleString('en-US'); }
function fmtCount(n, estimated) {
  if (!estimated) return fmtNum(n);
  if (n >= 1e6) return '≈' + (n / 1e6).toFixed(1) + 'M';
  if (n >= 1e3) return '≈' + Math.round(n / 1e3) + 'k';
  return '≈' + fmtNum(n);
}
function fmtAge(seconds) {
  if (seconds === null || seconds === undefined || isNaN(seconds)) return '';
  const a = Math.abs(seconds);
  let t;
  if (a < 1) t = Math.round(a * 1000) + ' ms';
  else if (a < 120) t = Math.round(a) + ' s';
  else if (a < 7200) t = Math.round(a / 60) + ' min';
  else if (a < 172800) t = (a / 3600).toFixed(1) + ' h';
  else t = (a / 86400).toFixed(1) + ' d';
  return seconds < 0 ? 'in ' + t : t;
}
function since(iso) { return iso ? (Date.now() - Date.parse(iso)) / 1000 : null; }
function fmtTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (isNaN(d)) return String(iso);
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}
function fmtBytes(n) {
  if (n < 1024) return n + ' B';
  if (n < 1048576) return (n / 1024).toFixed(1) + ' KB';
  return (n / 1048576).toFixed(1) + ' MB';
}
function badge(state) { return h('span', { class: 'badge st-' + String(state).replace(/[^a-z]/g, '') }, state); }
function progressBar(p) {
  if (!p || typeof p.percent !== 'number') return '';
  const pct = Math.max(0, Math.min(100, p.percent));
  const bar = h('span', { class: 'bar' });
  bar.style.width = pct + '%';
  return h('span', { class: 'progress', title: p.step || '' }, h('span', { class: 'track' }, bar),
           h('span', { class: 'pct' }, pct.toFixed(0) + '%'), p.step ? h('span', { class: 'step' }, p.step) : '');
}

// ---- messages ----
function flash(text, kind) {
  const f = document.getElementById('flash');
  f.className = kind || 'error';
  clear(f).append(document.createTextNode(text));
  f.hidden = false;
  clearTimeout(flash.timer);
  if (kind === 'ok') flash.timer = setTimeout(() => { f.hidden = true; }, 6000);
}
function unflash() { document.getElementById('flash').hidden = true; }

// ---- API ----
class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}
function token() { return sessionStorage.getItem('jr_token') || ''; }

async function api(path, opts) {
  opts = opts || {};
  const headers = { 'Accept': 'application/json' };
  if (opts.method === 'POST') {
    headers['Content-Type'] = 'application/json';
    headers['X-Jobrunner-CSRF'] = '1';
    if (token()) headers['Authorization'] = 'Bearer ' + token();
  }
  let res;
  try {
    res = await fetch(path, { method: opts.method || 'GET', headers, body: opts.body ? JSON.stringify(opts.body) : undefined,
                              credentials: 'same-origin', cache: 'no-store' });
  } catch (e) {
    throw new ApiError(0, 'the runner did not answer (' + e.message + ')');
  }
  let body = null;
  try { body = await res.json(); } catch (e) { body = null; }
  if (!res.ok) throw new ApiError(res.status, (body && body.error) || ('HTTP ' + res.status));
  return body;
}

// A change: POST, and on refusal say why (the server's reason, plus what to do about it).
async function mutate(path, body, okText) {
  try {
    const r = await api(path, { method: 'POST', body: body || {} });
    if (okText) flash(typeof okText === 'function' ? okText(r) : okText, 'ok');
    return r;
  } catch (e) {
    let hint = '';
    if (e.status === 401) hint = token() ? ' Check the API token above.' : ' Enter the API token above to make changes.';
    if (e.status === 403 && JR.meta && !JR.meta.writes_enabled) hint = ' This dashboard is read-only.';
    flash('Refused (' + (e.status || 'no answer') + '): ' + e.message + '.' + hint, 'error');
    return null;
  }
}

function confirmAction(text, okLabel) {
  const d = document.getElementById('confirm');
  document.getElementById('confirm-text').textContent = text;
  const ok = document.getElementById('confirm-ok');
  ok.textContent = okLabel;
  return new Promise((resolve) => {
    const done = (v) => { d.close(); ok.onclick = null; cancel.onclick = null; resolve(v); };
    const cancel = document.getElementById('confirm-cancel');
    ok.onclick = () => done(true);
    cancel.onclick = () => done(false);
    d.addEventListener('cancel', () => resolve(false), { once: true });
    d.showModal();
  });
}

// ---- polling: every page's refresh; stops when the page changes, pauses while hidden ----
function poll(fn, ms) {
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try { await fn(); } catch (e) { flash(e.message, 'error'); }
    }
    if (!stopped) t.id = setTimeout(tick, ms);
  };
  const t = { id: 0, stop() { stopped = true; clearTimeout(this.id); } };
  JR.timers.push(t);
  tick();
  return t;
}

// ---- router ----
function route() {
  for (const t of JR.timers) t.stop();
  JR.timers = [];
  if (JR.cleanup) { JR.cleanup(); JR.cleanup = null; }
  const hash = location.hash.replace(/^#\/?/, '') || 'overview';
  const [path, query] = hash.split('?');
  const parts = path.split('/');
  const params = Object.fromEntries(new URLSearchParams(query || ''));
  let page = parts[0];
  if (page === 'job') params.id = parts[1];
  if (!JR.pages[page]) page = 'overview';
  for (const a of document.querySelectorAll('nav a')) {
    a.classList.toggle('active', a.dataset.page === page || (page === 'job' && a.dataset.page === 'jobs'));
  }
  const main = clear(document.getElementById('main'));
  main.dataset.page = page;
  JR.cleanup = JR.pages[page](main, params) || null;
}

function setupToken() {
  const input = document.getElementById('token');
  const mode = document.getElementById('mode');
  const show = () => {
    input.value = '';
    input.placeholder = token() ? 'token set for this tab' : 'API token (for changes)';
    if (JR.meta && !JR.meta.writes_enabled) {
      mode.textContent = 'read-only: no API token is configured on the server';
    } else {
      mode.textContent = token() ? 'changes enabled' : 'read-only until a token is entered';
    }
  };
  document.getElementById('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    if (input.value) sessionStorage.setItem('jr_token', input.value);
    show();
  });
  document.getElementById('token-forget').addEventListener('click', () => {
    sessionStorage.removeItem('jr_token');
    show();
  });
  show();
  return show;
}

async function start() {
  try { JR.meta = await api('/api/v1/meta'); } catch (e) { flash(e.message, 'error'); }
  setupToken();
  if (JR.meta) {
    document.getElementById('footer').textContent = 'jobrunner ' + JR.meta.version +
      (JR.meta.dashboard_only ? ' · dashboard-only process (runner ui)' : '');
  }
  window.addEventListener('hashchange', () => { unflash(); route(); });
  route();
}
document.addEventListener('DOMContentLoaded', start);
