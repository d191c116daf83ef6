// Explore: an InfluxQL editor with history, a time range, and the results as a chart and as
// tables; CSV download of the same query.
//
// The time range reaches the query through two macros, as in Grafana: `$timeFilter` becomes
// `time >= '...' AND time < '...'` and `$interval` a GROUP BY width giving about 500 points
// over the range, so a chart over a month asks the server for 500 means, not every point.
// A query without them runs as written.

import { query, queryCsv } from '../api.js';
import { draw, lines } from '../chart.js';
import { field, h, message, replace, table } from '../dom.js';
import { iso } from '../format.js';

export const TITLE = 'Explore';

const HISTORY_KEY = 'strata.history';
const HISTORY_MAX = 50;
const TABLE_ROWS_MAX = 1000;
const TARGET_POINTS = 500;

const RANGES = [
  ['15m', 'Last 15 minutes', 15 * 60e3],
  ['1h', 'Last hour', 3600e3],
  ['6h', 'Last 6 hours', 6 * 3600e3],
  ['24h', 'Last 24 hours', 24 * 3600e3],
  ['7d', 'Last 7 days', 7 * 86400e3],
  ['30d', 'Last 30 days', 30 * 86400e3],
  ['custom', 'Custom…', 0],
];

const INTERVALS = [
  ['1s', 1e3], ['5s', 5e3], ['10s', 10e3], ['30s', 30e3], ['1m', 60e3], ['5m', 300e3],
  ['10m', 600e3], ['30m', 1800e3], ['1h', 3600e3], ['3h', 3 * 3600e3], ['6h', 6 * 3600e3],
  ['12h', 12 * 3600e3], ['1d', 86400e3], ['7d', 7 * 86400e3],
];

export function history() {
  try {
    const h = JSON.parse(localStorage.getItem(HISTORY_KEY) || '[]');
    return Array.isArray(h) ? h.filter((e) => e && typeof e.q === 'string') : [];
  } catch {
    return [];
  }
}

function remember(q, db) {
  const h = history().filter((e) => !(e.q === q && e.db === db));
  h.unshift({ q, db });
  localStorage.setItem(HISTORY_KEY, JSON.stringify(h.slice(0, HISTORY_MAX)));
}

/** `[from, to]` in Unix ms for a range choice. */
function bounds(range, fromInput, toInput) {
  if (range === 'custom') {
    const from = Date.parse(fromInput.value);
    const to = toInput.value ? Date.parse(toInput.value) : Date.now();
    if (Number.isNaN(from) || Number.isNaN(to)) throw new Error('Pick a start and an end for the custom range.');
    if (from >= to) throw new Error('The custom range must end after it starts.');
    return [from, to];
  }
  const span = RANGES.find((r) => r[0] === range)[2];
  const to = Date.now();
  return [to - span, to];
}

/** Replaces `$timeFilter` and `$interval`. */
export function expand(q, [from, to]) {
  const width = Math.max(1, (to - from) / TARGET_POINTS);
  const interval = (INTERVALS.find(([, ms]) => ms >= width) || INTERVALS[INTERVALS.length - 1])[0];
  return q
    .replaceAll('$timeFilter', `time >= '${iso(from)}' AND time < '${iso(to)}'`)
    .replaceAll('$interval', interval);
}

/** `climate {room=lab}`: a series' name and tags. */
function caption(s) {
  const tags = Object.entries(s.tags || {}).map(([k, v]) => `${k}=${v}`);
  return `${s.name || 'result'}${tags.length ? ` {${tags.join(', ')}}` : ''}`;
}

function cell(v, isTime) {
  if (isTime && typeof v === 'number') return iso(v);
  if (v === null || v === undefined) return '';
  return typeof v === 'string' ? v : JSON.stringify(v);
}

export function render(view, { params }) {
  const dbInput = h('input', { id: 'db', name: 'db', list: 'db-list', value: params.get('db') || localStorage.getItem('strata.db') || '', spellcheck: 'false' });
  const dbList = h('datalist', { id: 'db-list' });
  const range = h('select', { id: 'range', name: 'range' }, RANGES.map(([v, text]) => h('option', { value: v, selected: v === '1h' }, text)));
  const from = h('input', { id: 'from', type: 'datetime-local', step: '1' });
  const to = h('input', { id: 'to', type: 'datetime-local', step: '1' });
  const custom = h('span', { class: 'custom', hidden: true }, field('From', from), field('To', to));
  range.addEventListener('change', () => {
    custom.hidden = range.value !== 'custom';
  });
  const q = h('textarea', {
    id: 'q',
    name: 'q',
    rows: 4,
    spellcheck: 'false',
    placeholder: 'SELECT mean(*) FROM "climate" WHERE $timeFilter GROUP BY time($interval) fill(none)',
    'aria-describedby': 'q-help',
  });
  q.value = params.get('q') || '';
  const run = h('button', { id: 'run', type: 'submit' }, 'Run');
  const csv = h('button', { id: 'csv', type: 'button', class: 'secondary' }, 'Download CSV');
  const status = h('div', { id: 'status', 'aria-live': 'polite' });
  const chart = h('div', { id: 'chart', class: 'chart', dataset: { points: '0', lines: '0' } });
  const tables = h('div', { id: 'tables' });
  const hist = h('ol', { id: 'history', class: 'history' });

  function showHistory() {
    replace(
      hist,
      history().map((e) =>
        h('li', {}, h('button', {
          type: 'button',
          class: 'link',
          title: e.q,
          onclick: () => {
            q.value = e.q;
            dbInput.value = e.db || '';
            q.focus();
          },
        }, e.db ? `[${e.db}] ` : '', e.q.length > 120 ? `${e.q.slice(0, 117)}…` : e.q)),
      ),
    );
  }

  function prepared() {
    const text = q.value.trim();
    if (!text) throw new Error('Type a query first.');
    const span = bounds(range.value, from, to);
    return { text, expanded: expand(text, span), db: dbInput.value.trim(), range: text.includes('$timeFilter') ? span : undefined };
  }

  async function runQuery() {
    let p;
    try {
      p = prepared();
    } catch (e) {
      replace(status, message('error', e.message));
      return;
    }
    remember(p.text, p.db);
    localStorage.setItem('strata.db', p.db);
    showHistory();
    run.disabled = true;
    replace(status, message('info', 'Running…'));
    const started = performance.now();
    try {
      const results = await query(p.expanded, { db: p.db || undefined });
      const all = [];
      const errors = [];
      results.forEach((r, i) => {
        if (r.error) errors.push(message('error', `Statement ${i + 1}: ${r.error}`));
        for (const s of r.series || []) all.push(s);
      });
      const ms = Math.round(performance.now() - started);
      const rows = all.reduce((n, s) => n + s.values.length, 0);
      replace(status, errors, message('ok', `${all.length} series, ${rows} rows in ${ms} ms.`));
      draw(chart, lines(all), { range: p.range });
      replace(
        tables,
        all.map((s) => {
          const t = s.columns.indexOf('time');
          const shown = s.values.slice(0, TABLE_ROWS_MAX);
          return h(
            'div',
            { class: 'result' },
            table(s.columns, shown.map((row) => row.map((v, i) => cell(v, i === t))), caption(s)),
            s.values.length > shown.length ? message('info', `First ${shown.length} of ${s.values.length} rows; download the CSV for all.`) : null,
          );
        }),
      );
    } catch (e) {
      replace(status, message('error', e.text || e.message));
      draw(chart, []);
      replace(tables);
    } finally {
      run.disabled = false;
    }
  }

  async function downloadCsv() {
    let p;
    try {
      p = prepared();
    } catch (e) {
      replace(status, message('error', e.message));
      return;
    }
    csv.disabled = true;
    try {
      const text = await queryCsv(p.expanded, { db: p.db || undefined });
      const url = URL.createObjectURL(new Blob([text], { type: 'text/csv' }));
      const a = h('a', { href: url, download: 'strata-query.csv', hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60e3);
      const lines = text.split('\n').filter(Boolean).length;
      replace(status, h('p', { id: 'csv-status', class: 'msg ok', role: 'status' }, `CSV: ${Math.max(0, lines - 1)} rows, ${text.length} bytes, saved as strata-query.csv.`));
    } catch (e) {
      replace(status, message('error', e.text || e.message));
    } finally {
      csv.disabled = false;
    }
  }

  csv.addEventListener('click', downloadCsv);
  q.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      runQuery();
    }
  });

  const form = h(
    'form',
    { class: 'explore', onsubmit: (ev) => { ev.preventDefault(); runQuery(); } },
    h('div', { class: 'row' }, field('Database', dbInput), dbList, field('Time range', range), custom),
    field('InfluxQL query', q),
    h('p', { id: 'q-help', class: 'muted small' },
      'Ctrl+Enter runs. $timeFilter stands for the time range, $interval for a GROUP BY time() width giving about 500 points.'),
    h('div', { class: 'row' }, run, csv),
  );
  view.append(
    h('h1', {}, 'Explore'),
    form,
    status,
    chart,
    tables,
    h('section', { class: 'history-box' }, h('h2', {}, 'History'), hist),
  );
  showHistory();
  // Database names for the picker, when the token may list them.
  query('SHOW DATABASES')
    .then(([r]) => {
      const names = ((r && r.series && r.series[0] && r.series[0].values) || []).map((v) => v[0]);
      replace(dbList, names.map((n) => h('option', { value: n })));
    })
    .catch(() => {});
  // A query from the link (Databases' measurement links) is only put in the editor: running
  // it on load would let any link run any statement with the user's token.
}
