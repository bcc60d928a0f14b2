// hookflow's run history page: a small static page over the JSON admin API.
// Every value shown goes through textContent (the h() helper); nothing a
// sender or a workflow controls is ever parsed as HTML.
'use strict';

(() => {
  const TOKEN_KEY = 'hookflow.adminToken';
  const FINISHED = ['resolved', 'failed', 'aborted'];
  const STATUSES = ['resolved', 'failed', 'aborted', 'running', 'waiting', 'queued'];
  const REASONS = ['unauthorized', 'invalid_signature', 'payload_too_large', 'unsupported_media_type',
    'bad_request', 'method_not_allowed', 'request_timeout', 'unavailable', 'store_unavailable'];
  const POLL_MS = 1000;
  const MAX_POLLS = 300;
  const main = document.getElementById('main');
  const nav = document.getElementById('nav');
  const signout = document.getElementById('signout');
  let generation = 0;
  let timer = null;
  let lastView = null;
  let workflowIds = null;

  class LoginNeeded extends Error {}
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  // ---- DOM -----------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  const enc = encodeURIComponent;
  const show = (...nodes) => main.replaceChildren(
    ...nodes.flat(Infinity).filter(n => n !== null && n !== undefined && n !== false));
  const notice = (text, kind) => h('p', { class: `notice ${kind || ''}`, role: kind === 'bad' ? 'alert' : 'status' }, text);
  const badge = (status, prefix) => h('span', { class: `badge ${prefix || 's'}-${status}` }, status);
  const runHref = id => `#/run/${enc(id)}`;

  function httpStatus(code) {
    if (code === null || code === undefined) return h('span', { class: 'muted' }, '—');
    return h('span', { class: `http${code >= 400 ? ' http-bad' : ''}` }, code);
  }

  function pad(n) { return String(n).padStart(2, '0'); }

  function fmtTime(iso) {
    if (!iso) return h('span', { class: 'muted' }, '—');
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso;
    const text = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return h('time', { datetime: iso, title: iso }, text);
  }

  function fmtMs(ms) {
    if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
    if (ms < 1000) return `${Math.round(ms)} ms`;
    if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
    return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
  }

  function between(a, b) {
    if (!a || !b) return '—';
    return fmtMs(new Date(b).getTime() - new Date(a).getTime());
  }

  function pretty(value) {
    if (typeof value === 'string') return value;
    return JSON.stringify(value, null, 2);
  }

  function kvTable(pairs, label) {
    if (!pairs.length) return h('p', { class: 'muted' }, `No ${label}.`);
    return h('table', { class: 'kv', 'aria-label': label },
      h('tbody', null, pairs.map(([k, v]) => h('tr', null, h('td', null, k), h('td', null, pretty(v))))));
  }

  function pairsOf(headers) {
    if (Array.isArray(headers)) return headers.map(p => (Array.isArray(p) ? p : [p.name, p.value]));
    if (headers && typeof headers === 'object') return Object.entries(headers);
    return [];
  }

  function toLocalInput(iso) {
    const d = iso ? new Date(iso) : null;
    if (!d || Number.isNaN(d.getTime())) return '';
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  // A time field has minutes only: `end` makes it the minute's last
  // millisecond (an inclusive "to 10:02" keeps the runs of 10:02:30).
  function fromLocalInput(value, end) {
    if (!value) return '';
    const d = new Date(value);
    if (Number.isNaN(d.getTime())) return '';
    if (end) d.setSeconds(59, 999);
    return d.toISOString();
  }

  function select(id, label, options, value) {
    return h('label', { for: id }, label,
      h('select', { id, name: id },
        options.map(([v, text]) => h('option', { value: v, selected: v === value }, text))));
  }

  function rowLink(tr, href) {
    tr.classList.add('link');
    tr.tabIndex = 0;
    tr.addEventListener('click', ev => {
      if (ev.target.closest('a, button, summary')) return;
      location.hash = href;
    });
    tr.addEventListener('keydown', ev => {
      if (ev.key === 'Enter' && ev.target === tr) location.hash = href;
    });
    return tr;
  }

  // ---- the API -------------------------------------------------------------

  async function call(path, { method = 'GET', body } = {}) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) throw new LoginNeeded();
    const headers = { Authorization: `Bearer ${token}` };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response;
    try {
      response = await fetch(path, {
        method, headers, cache: 'no-store', credentials: 'omit',
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError(0, 'network', `The server did not answer (${e.message}).`);
    }
    if (response.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      throw new LoginNeeded();
    }
    const text = await response.text();
    if (!response.ok) {
      let message = text || response.statusText;
      let code = null;
      try {
        const j = JSON.parse(text);
        message = j.message || message;
        code = j.error || null;
      } catch (_) { /* not JSON */ }
      throw new ApiError(response.status, code, `${response.status}: ${message}`);
    }
    return text;
  }

  async function api(path, options) {
    const text = await call(path, options);
    return text ? JSON.parse(text) : null;
  }

  async function knownWorkflows() {
    if (!workflowIds) {
      const data = await api('/api/workflows');
      workflowIds = data.workflows.map(w => w.id);
    }
    return workflowIds;
  }

  function query(params, names) {
    const q = new URLSearchParams();
    for (const n of names) if (params.get(n)) q.set(n, params.get(n));
    return q.toString();
  }

  // ---- sign in ---------------------------------------------------------------

  function showLogin(message) {
    nav.hidden = true;
    signout.hidden = true;
    const input = h('input', { type: 'password', id: 'token', name: 'token', autocomplete: 'off', required: true });
    const form = h('form', {
      onsubmit: ev => {
        ev.preventDefault();
        sessionStorage.setItem(TOKEN_KEY, input.value.trim());
        workflowIds = null;
        route();
      },
    }, h('label', { for: 'token' }, 'Admin token', input), h('button', { type: 'submit' }, 'Sign in'));
    document.title = 'hookflow · sign in';
    show(h('section', { class: 'login' },
      h('h1', null, 'Sign in'),
      h('p', { class: 'muted' }, 'The admin token of this server (HOOKFLOW_ADMIN_TOKEN). It is kept for this browser tab only.'),
      message ? notice(message, 'bad') : null,
      form));
    input.focus();
  }

  // ---- views -----------------------------------------------------------------

  async function workflowsView(gen) {
    const data = await api('/api/workflows');
    if (gen !== generation) return;
    workflowIds = data.workflows.map(w => w.id);
    const since = new Date(Date.now() - 864e5).toISOString();
    const rows = [];
    for (const w of data.workflows) {
      const counts = w.counts_24h || {};
      const runsOf = status => `#/runs?${new URLSearchParams({ workflow: w.id, ...(status ? { status } : {}), since })}`;
      const countBadges = Object.keys(counts).length === 0
        ? h('span', { class: 'muted' }, 'no runs')
        : STATUSES.filter(s => counts[s]).map(s =>
          h('a', { href: runsOf(s), title: `${s} runs of ${w.id} in the last 24 h` },
            h('span', { class: `badge s-${s}` }, `${counts[s]} ${s}`)));
      const copy = h('button', { type: 'button', class: 'quiet copy', 'aria-label': `Copy the URL of ${w.id}` }, 'Copy');
      const url = h('code', { title: w.url }, w.url);
      copy.addEventListener('click', () => copyText(w.url, copy, url));
      const state = !w.loaded ? badge('not loaded', 's-failed') : w.enabled ? 'enabled' : 'disabled';
      rows.push(h('tr', null,
        h('td', null, h('a', { href: runsOf(null).replace(/&since=[^&]*/, '') }, w.id), h('div', { class: 'muted' }, w.title)),
        h('td', null, w.mode),
        h('td', null, state),
        h('td', null, h('div', { class: 'url' }, url, copy)),
        h('td', null, h('div', { class: 'counts' }, countBadges))));
      if (w.diagnostics && w.diagnostics.length) {
        rows.push(h('tr', null, h('td', { colspan: 5 },
          w.diagnostics.map(d => h('div', { class: `diag ${d.severity}` },
            `${w.id}:${d.line}:${d.column}: ${d.severity}: ${d.message}`)))));
      }
    }
    const problems = data.problems || [];
    document.title = 'hookflow · workflows';
    show(
      h('h1', null, 'Workflows'),
      problems.length ? h('section', { 'aria-label': 'Problems' },
        h('h2', null, 'Files not served'),
        problems.map(p => h('div', { class: 'diag' }, [p.workflow || p.file, p.message].filter(Boolean).join(': ')))) : null,
      data.workflows.length ? h('table', null,
        h('thead', null, h('tr', null, ['Workflow', 'Mode', 'State', 'URL', 'Runs, last 24 h'].map(t => h('th', { scope: 'col' }, t)))),
        h('tbody', null, rows)) : h('p', { class: 'muted' }, 'No workflow files in the folder.'),
      data.counts_24h_cut ? h('p', { class: 'muted' }, 'Counts are of the newest runs only (there were too many to count).') : null);
  }

  async function copyText(text, button, codeEl) {
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = 'Copied';
    } catch (_) {
      const range = document.createRange();
      range.selectNodeContents(codeEl);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      button.textContent = 'Press Ctrl+C';
    }
    setTimeout(() => { button.textContent = 'Copy'; }, 2000);
  }

  async function runsView(params, gen) {
    const names = ['workflow', 'status', 'since', 'until', 'cursor'];
    const [ids, data] = await Promise.all([
      knownWorkflows(),
      api(`/api/executions?${query(params, names)}`),
    ]);
    if (gen !== generation) return;
    // A workflow no longer loaded still has its runs: kept in the choice
    // while its runs are shown, so that another filter does not drop it.
    const chosen = params.get('workflow') || '';
    const choices = chosen && !ids.includes(chosen) ? [...ids, chosen] : ids;
    const form = h('form', { class: 'filters', 'aria-label': 'Filter runs' },
      select('f-workflow', 'Workflow', [['', 'all'], ...choices.map(i => [i, i])], chosen),
      select('f-status', 'Status', [['', 'all'], ...STATUSES.map(s => [s, s])], params.get('status') || ''),
      h('label', { for: 'f-since' }, 'Started from', h('input', { type: 'datetime-local', id: 'f-since', value: toLocalInput(params.get('since')) })),
      h('label', { for: 'f-until' }, 'to', h('input', { type: 'datetime-local', id: 'f-until', value: toLocalInput(params.get('until')) })),
      h('button', { type: 'submit' }, 'Show runs'),
      h('a', { href: '#/runs' }, 'Clear filters'));
    form.addEventListener('submit', ev => {
      ev.preventDefault();
      const q = new URLSearchParams();
      const v = id => form.querySelector(`#${id}`).value;
      if (v('f-workflow')) q.set('workflow', v('f-workflow'));
      if (v('f-status')) q.set('status', v('f-status'));
      if (fromLocalInput(v('f-since'))) q.set('since', fromLocalInput(v('f-since')));
      if (fromLocalInput(v('f-until'), true)) q.set('until', fromLocalInput(v('f-until'), true));
      location.hash = `#/runs?${q}`;
    });
    const rows = data.executions.map(r => rowLink(h('tr', { 'data-status': r.status },
      h('td', null, badge(r.status)),
      h('td', { class: 'num' }, httpStatus(r.response_status)),
      h('td', null, fmtTime(r.started_at)),
      h('td', { class: 'num' }, between(r.started_at, r.finished_at)),
      h('td', null, r.workflow),
      h('td', null, h('a', { href: runHref(r.id), class: 'mono' }, r.id),
        r.retry_of ? h('div', { class: 'muted' }, 'retry') : null)), runHref(r.id)));
    const base = new URLSearchParams(query(params, ['workflow', 'status', 'since', 'until']));
    const older = data.next_cursor ? new URLSearchParams([...base, ['cursor', data.next_cursor]]) : null;
    document.title = 'hookflow · runs';
    show(
      h('h1', null, 'Runs'),
      form,
      rows.length ? h('table', { id: 'runs' },
        h('caption', { class: 'muted' }, params.get('cursor') ? 'Older runs, newest first' : 'Newest first'),
        h('thead', null, h('tr', null,
          [['Status'], ['HTTP', 'num'], ['Started'], ['Duration', 'num'], ['Workflow'], ['Run']].map(([t, c]) => h('th', { scope: 'col', class: c }, t)))),
        h('tbody', null, rows)) : h('p', { class: 'muted' }, 'No runs match.'),
      h('nav', { class: 'pager', 'aria-label': 'Pages' },
        params.get('cursor') ? h('a', { href: `#/runs?${base}` }, '← Newest') : null,
        older ? h('a', { href: `#/runs?${older}`, rel: 'next' }, 'Older →') : null));
  }

  // `shown`: the record (and retries) the page shows now, while it polls a
  // run that has not finished: unchanged, the page is left as it is, so an
  // open section, the focus and a selection stay.
  async function runView(id, gen, polls = 0, shown = '') {
    const run = await api(`/api/executions/${enc(id)}`);
    // The record names its retries (oldest first); the newest 20 are
    // read for their status, each by its id.
    const retries = await Promise.all((run.retries || []).slice(-20).reverse().map(async (rid) => {
      try {
        return await api(`/api/executions/${enc(rid)}`);
      } catch (e) {
        if (e instanceof LoginNeeded) throw e;
        return { id: rid };
      }
    }));
    if (gen !== generation) return;
    const finished = FINISHED.includes(run.status);
    const seen = JSON.stringify([run, retries]);
    const again = () => {
      if (!finished && polls < MAX_POLLS) {
        timer = setTimeout(() => {
          if (gen === generation) runView(id, gen, polls + 1, seen).catch(e => failed(e, gen));
        }, POLL_MS);
      }
    };
    if (seen === shown && polls < MAX_POLLS) {
      again();
      return;
    }
    const message = h('div', { 'aria-live': 'polite' });
    const buttons = [];
    // A retry runs the workflow again, requests and all: asked once more
    // when the run did its work already or was retried before.
    const retried = (run.retries || []).length;
    const ask = run.status === 'resolved'
      ? 'This run resolved: a retry runs it again and sends its requests again. Retry it?'
      : retried ? `This run was retried ${retried === 1 ? 'once' : `${retried} times`} already. Retry it again?` : null;
    const retryButton = (version, text) => {
      const b = h('button', { type: 'button', disabled: !finished, 'data-version': version }, text);
      b.addEventListener('click', () => {
        if (ask && !window.confirm(ask)) return;
        retry(id, version, buttons, message);
      });
      buttons.push(b);
      return b;
    };
    const download = h('button', { type: 'button', class: 'quiet', 'data-action': 'test-case' }, 'Download as a test case');
    download.addEventListener('click', () => downloadTestCase(run, download, message));
    const entries = h('div');
    const parseButton = h('button', { type: 'button', class: 'quiet', 'data-action': 'parse-entries' }, 'Parse entries from this request');
    parseButton.addEventListener('click', () => showParseEntries(run, parseButton, entries, message));
    const response = run.response;
    const trigger = run.trigger || {};
    const query = trigger.query && typeof trigger.query === 'object' ? Object.entries(trigger.query) : [];
    document.title = `hookflow · run ${id}`;
    show(
      h('p', null, h('a', { href: `#/runs?${new URLSearchParams({ workflow: run.workflow })}` }, `← Runs of ${run.workflow}`)),
      h('h1', null, 'Run ', h('span', { class: 'mono' }, run.id), ' ', badge(run.status)),
      h('dl', { class: 'facts' },
        h('dt', null, 'Workflow'), h('dd', null, run.workflow, ' ', h('span', { class: 'muted mono', title: 'version' }, (run.version || '').slice(0, 12))),
        h('dt', null, 'Answer'), h('dd', null, response ? httpStatus(response.status) : h('span', { class: 'muted' }, 'none yet'),
          run.retry_of ? h('span', { class: 'muted' }, ' (a retry: sent to no one)') : null),
        h('dt', null, 'Started'), h('dd', null, fmtTime(run.started_at)),
        h('dt', null, 'Finished'), h('dd', null, fmtTime(run.finished_at)),
        h('dt', null, 'Duration'), h('dd', null, between(run.started_at, run.finished_at)),
        run.retry_of ? [h('dt', null, 'Retry of'), h('dd', null, h('a', { href: runHref(run.retry_of), class: 'mono' }, run.retry_of))] : null,
        retries.length ? [h('dt', null, 'Retries'), h('dd', null, h('ul', { class: 'plain' },
          retries.map(r => h('li', null, h('a', { href: runHref(r.id), class: 'mono' }, r.id), ' ', r.status ? badge(r.status) : null)),
          run.retries.length > retries.length ? h('li', { class: 'muted' }, `and ${run.retries.length - retries.length} older`) : null))] : null),
      run.error ? h('div', { class: 'error-text', role: 'note' }, run.error) : null,
      h('div', { class: 'actions' },
        retryButton('recorded', 'Retry on the recorded version'),
        retryButton('current', 'Retry on the current version'),
        download,
        parseButton),
      finished ? null : h('p', { class: 'muted' }, polls < MAX_POLLS ? 'Still running: this page refreshes by itself.' : 'Still running: reload to see more.'),
      message,
      entries,
      h('h2', null, 'Trigger request'),
      h('p', { class: 'mono' }, `${trigger.method || ''} ${trigger.path || ''}`),
      query.length ? [h('h3', null, 'Query'), kvTable(query, 'query parameters')] : null,
      h('details', null, h('summary', null, `Headers (${pairsOf(trigger.headers).length})`), kvTable(pairsOf(trigger.headers), 'headers')),
      h('h3', null, 'Body'),
      trigger.body === null || trigger.body === undefined || trigger.body === '' ? h('p', { class: 'muted' }, 'Empty.') : h('pre', null, pretty(trigger.body)),
      h('h2', null, `Nodes (${(run.jobs || []).length})`),
      (run.jobs || []).length ? run.jobs.map(jobCard) : h('p', { class: 'muted' }, 'No node ran.'),
      h('h2', null, 'Answer sent'),
      response ? [
        h('p', null, 'Status ', httpStatus(response.status)),
        h('details', null, h('summary', null, `Headers (${pairsOf(response.headers).length})`), kvTable(pairsOf(response.headers), 'headers')),
        h('pre', null, pretty(response.body)),
      ] : h('p', { class: 'muted' }, 'No answer was sent.'));
    again();
  }

  function jobCard(job) {
    const tries = Array.isArray(job.tries) ? job.tries : [];
    const result = job.result;
    const hasResult = result !== null && result !== undefined;
    const text = hasResult ? pretty(result) : '';
    return h('section', { class: `card ${job.status}`, 'aria-label': `node ${job.key || job.type}` },
      h('div', { class: 'card-head' },
        h('h3', { class: 'mono' }, job.key || '(no key)'),
        h('span', { class: 'muted' }, job.type),
        badge(job.status),
        h('span', { class: 'grow' }),
        h('span', { class: 'muted' }, fmtMs(job.duration_ms)),
        h('span', { class: 'muted' }, fmtTime(job.started_at))),
      job.error ? h('div', { class: 'error-text' }, job.error) : null,
      tries.length ? h('table', { class: 'tries', 'aria-label': 'tries' },
        h('thead', null, h('tr', null, ['Try', 'Outcome', 'HTTP', 'Duration', 'Started', 'Detail'].map(t => h('th', { scope: 'col' }, t)))),
        h('tbody', null, tries.map((t, i) => h('tr', null,
          h('td', null, t.attempt || i + 1),
          h('td', null, t.outcome ? badge(t.outcome, 'o') : '—'),
          h('td', null, httpStatus(t.status)),
          h('td', null, fmtMs(t.duration_ms)),
          h('td', null, fmtTime(t.started_at)),
          h('td', null, t.error ? h('div', { class: 'error-text' }, t.error) : null,
            t.headers || (t.body !== undefined && t.body !== null) ? h('details', null, h('summary', null, 'answer'),
              t.headers ? kvTable(pairsOf(t.headers), 'headers') : null,
              t.body !== undefined && t.body !== null ? h('pre', null, pretty(t.body)) : null) : null))))) : null,
      hasResult ? (text.length > 400
        ? h('details', null, h('summary', null, job.truncated ? 'Result (cut)' : 'Result'), h('pre', null, text))
        : [h('div', { class: 'muted' }, job.truncated ? 'Result (cut)' : 'Result'), h('pre', null, text)]) : null);
  }

  async function retry(id, version, buttons, message) {
    buttons.forEach(b => { b.disabled = true; });
    message.replaceChildren(notice(`Starting a retry on the ${version} version…`));
    try {
      const data = await api(`/api/executions/${enc(id)}/retry`, { method: 'POST', body: { version } });
      location.hash = runHref(data.execution_id);
    } catch (e) {
      if (e instanceof LoginNeeded) return showLogin('Sign in again to retry.');
      message.replaceChildren(notice(`Retry refused: ${e.message}`, 'bad'));
      buttons.forEach(b => { b.disabled = false; });
    }
  }

  async function downloadTestCase(run, button, message) {
    button.disabled = true;
    try {
      const yaml = await call(`/api/executions/${enc(run.id)}/test-case`);
      const url = URL.createObjectURL(new Blob([yaml], { type: 'application/yaml' }));
      const a = h('a', { href: url, download: `${run.workflow}.test.yaml`, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
      message.replaceChildren(notice(`Saved ${run.workflow}.test.yaml: put it beside ${run.workflow}.yaml and run hookflow test.`, 'good'));
    } catch (e) {
      if (e instanceof LoginNeeded) return showLogin('Sign in again to download.');
      message.replaceChildren(notice(`No test case: ${e.message}`, 'bad'));
    } finally {
      button.disabled = false;
    }
  }

  async function showParseEntries(run, button, out, message) {
    button.disabled = true;
    try {
      const yaml = await call(`/api/executions/${enc(run.id)}/parse-entries`);
      out.replaceChildren(
        h('h2', { id: 'parse-entries' }, 'Parse entries from this request'),
        h('p', { class: 'muted' }, 'Paste this under trigger: in a workflow file and delete the lines you do not need (the same as hookflow sample --execution).'),
        h('pre', { class: 'parse-entries', tabindex: '0', 'aria-labelledby': 'parse-entries' }, yaml));
      message.replaceChildren();
    } catch (e) {
      if (e instanceof LoginNeeded) return showLogin('Sign in again to see the parse entries.');
      message.replaceChildren(notice(`No parse entries: ${e.message}`, 'bad'));
    } finally {
      button.disabled = false;
    }
  }

  async function refusedView(params, gen) {
    let data;
    const ids = await knownWorkflows();
    try {
      data = await api(`/api/requests?${query(params, ['workflow', 'reason', 'since', 'cursor'])}`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404 && !e.message.includes('no such workflow')) {
        data = null;
      } else throw e;
    }
    if (gen !== generation) return;
    document.title = 'hookflow · refused requests';
    const form = h('form', { class: 'filters', 'aria-label': 'Filter refused requests' },
      select('r-workflow', 'Workflow', [['', 'all'], ...ids.map(i => [i, i])], params.get('workflow') || ''),
      select('r-reason', 'Reason', [['', 'all'], ...REASONS.map(r => [r, r])], params.get('reason') || ''),
      h('label', { for: 'r-since' }, 'Since', h('input', { type: 'datetime-local', id: 'r-since', value: toLocalInput(params.get('since')) })),
      h('button', { type: 'submit' }, 'Show'),
      h('a', { href: '#/refused' }, 'Clear filters'));
    form.addEventListener('submit', ev => {
      ev.preventDefault();
      const q = new URLSearchParams();
      const v = id => form.querySelector(`#${id}`).value;
      if (v('r-workflow')) q.set('workflow', v('r-workflow'));
      if (v('r-reason')) q.set('reason', v('r-reason'));
      if (fromLocalInput(v('r-since'))) q.set('since', fromLocalInput(v('r-since')));
      location.hash = `#/refused?${q}`;
    });
    if (!data) {
      show(h('h1', null, 'Refused requests'), notice('This server does not list refused requests.', 'bad'));
      return;
    }
    const base = new URLSearchParams(query(params, ['workflow', 'reason', 'since']));
    const rows = data.requests.map(r => h('tr', null,
      h('td', null, fmtTime(r.at)),
      h('td', null, r.workflow),
      h('td', { class: 'num' }, httpStatus(r.status)),
      h('td', null, h('span', { class: 'badge o-4xx' }, r.reason)),
      h('td', null, r.error),
      h('td', { class: 'mono' }, r.method, ' ', r.remote_addr),
      h('td', null, h('details', null, h('summary', null, `${pairsOf(r.headers).length} headers, ${r.body_size ?? 0} B body`),
        kvTable(pairsOf(r.headers), 'headers')))));
    show(
      h('h1', null, 'Refused requests'),
      form,
      rows.length ? h('table', { id: 'refused' },
        h('thead', null, h('tr', null, [['Time'], ['Workflow'], ['HTTP', 'num'], ['Reason'], ['Message'], ['Sender'], ['Request']].map(([t, c]) => h('th', { scope: 'col', class: c }, t)))),
        h('tbody', null, rows)) : h('p', { class: 'muted' }, 'No refused requests match.'),
      h('nav', { class: 'pager', 'aria-label': 'Pages' },
        params.get('cursor') ? h('a', { href: `#/refused?${base}` }, '← Newest') : null,
        data.next_cursor ? h('a', { href: `#/refused?${new URLSearchParams([...base, ['cursor', data.next_cursor]])}`, rel: 'next' }, 'Older →') : null));
  }

  // ---- routing ---------------------------------------------------------------

  function failed(e, gen) {
    if (gen !== generation) return;
    if (e instanceof LoginNeeded) {
      showLogin('The token was not accepted. Enter it again.');
      return;
    }
    show(h('h1', null, 'Something went wrong'), notice(e.message, 'bad'),
      h('p', null, h('a', { href: location.hash || '#/workflows' }, 'Try again'), ' · ', h('a', { href: '#/runs' }, 'All runs')));
  }

  async function route() {
    const gen = ++generation;
    clearTimeout(timer);
    if (!sessionStorage.getItem(TOKEN_KEY)) {
      showLogin();
      return;
    }
    const raw = location.hash.replace(/^#\/?/, '');
    const cut = raw.indexOf('?');
    const path = cut < 0 ? raw : raw.slice(0, cut);
    const params = new URLSearchParams(cut < 0 ? '' : raw.slice(cut + 1));
    const parts = path.split('/').filter(Boolean).map(p => {
      try { return decodeURIComponent(p); } catch (_) { return p; }
    });
    const view = ['runs', 'run', 'refused'].includes(parts[0]) ? parts[0] : 'workflows';
    nav.hidden = false;
    signout.hidden = false;
    for (const a of nav.querySelectorAll('a')) {
      const here = a.dataset.view === (view === 'run' ? 'runs' : view);
      if (here) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    const moved = lastView !== `${view}/${parts[1] || ''}`;
    lastView = `${view}/${parts[1] || ''}`;
    try {
      if (view === 'runs') await runsView(params, gen);
      else if (view === 'run' && parts[1]) await runView(parts[1], gen);
      else if (view === 'refused') await refusedView(params, gen);
      else await workflowsView(gen);
      if (moved && gen === generation) {
        window.scrollTo(0, 0);
        if (!main.contains(document.activeElement)) main.focus({ preventScroll: true });
      }
    } catch (e) {
      failed(e, gen);
    }
  }

  signout.addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    workflowIds = null;
    lastView = null;
    route();
  });
  window.addEventListener('hashchange', route);
  route();
})();
