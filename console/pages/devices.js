// Devices: the MQTT fleet as the broker knows it (`/api/v1/mqtt/devices`: online, last seen,
// connections), filtered in the page; one device's status, latest values (`last(*)` of each
// measurement it wrote) and a recent-data chart.

import { getJson, query } from '../api.js';
import { draw, lines } from '../chart.js';
import { field, h, message, replace, table } from '../dom.js';
import { ago, ident, iso, num, str } from '../format.js';

export const TITLE = 'Devices';

const DB_KEY = 'strata.devices.db';
/** Measurements asked for one device's latest values (one statement each). */
const MEASUREMENTS_MAX = 20;
const LIST_MAX = 500;

function status(d) {
  return h('span', { class: d.online ? 'badge online' : 'badge offline' }, d.online ? 'online' : 'offline');
}

function listPage(view, params) {
  const search = h('input', { id: 'device-search', type: 'search', value: params.get('q') || '', spellcheck: 'false' });
  const which = h('select', { id: 'device-status' }, ['all', 'online', 'offline'].map((v) => h('option', { value: v, selected: params.get('status') === v }, v)));
  const summary = h('div', { id: 'device-summary', 'aria-live': 'polite' });
  const out = h('div', { id: 'device-list' });
  let devices = [];

  function show() {
    const needle = search.value.trim().toLowerCase();
    const shown = devices.filter(
      (d) =>
        (which.value === 'all' || (which.value === 'online') === d.online) &&
        (!needle || d.device.toLowerCase().includes(needle) || (d.client_id || '').toLowerCase().includes(needle)),
    );
    const online = devices.filter((d) => d.online).length;
    replace(summary, message('info', `${devices.length} devices, ${online} online; ${shown.length} match${shown.length > LIST_MAX ? `, the first ${LIST_MAX} shown` : ''}.`));
    replace(
      out,
      shown.length
        ? table(
          ['device', 'status', 'last seen', 'connected at', 'connections', 'offline because'],
          shown.slice(0, LIST_MAX).map((d) => [
            h('a', { href: `#/devices/${encodeURIComponent(d.device)}` }, d.device),
            status(d),
            h('span', { title: iso(d.last_seen_ms) }, ago(d.last_seen_ms)),
            iso(d.connected_at_ms),
            num(d.connections),
            d.offline_reason || '',
          ]),
        )
        : null,
    );
  }

  async function load() {
    try {
      const r = await getJson('/api/v1/mqtt/devices');
      devices = r.devices.sort((a, b) => a.device.localeCompare(b.device));
      show();
    } catch (e) {
      replace(out, message('error', `Cannot list devices: ${e.text || e.message}`));
    }
  }

  search.addEventListener('input', show);
  which.addEventListener('change', show);
  view.append(
    h('h1', {}, 'Devices'),
    h('form', { class: 'row', role: 'search', onsubmit: (ev) => ev.preventDefault() },
      field('Search', search), field('Status', which),
      h('button', { type: 'button', id: 'device-refresh', class: 'secondary', onclick: load }, 'Refresh')),
    summary,
    out,
  );
  load();
}

function devicePage(view, id) {
  const dbInput = h('input', { id: 'device-db', value: localStorage.getItem(DB_KEY) || 'telemetry', spellcheck: 'false' });
  const info = h('div', { id: 'device-status-box' }, message('info', 'Loading…'));
  const latest = h('div', { id: 'device-latest' });
  const chart = h('div', { id: 'device-chart', class: 'chart', dataset: { points: '0', lines: '0' } });

  async function loadStatus() {
    try {
      const d = await getJson(`/api/v1/mqtt/devices/${encodeURIComponent(id)}`);
      replace(info, h('dl', { class: 'facts' },
        h('dt', {}, 'status'), h('dd', {}, status(d), d.offline_reason ? ` (${d.offline_reason})` : ''),
        h('dt', {}, 'client id'), h('dd', {}, d.client_id),
        h('dt', {}, 'last seen'), h('dd', {}, `${iso(d.last_seen_ms)} (${ago(d.last_seen_ms)})`),
        h('dt', {}, 'connected at'), h('dd', {}, iso(d.connected_at_ms)),
        h('dt', {}, 'connections'), h('dd', {}, num(d.connections)),
        h('dt', {}, 'last will published'), h('dd', {}, d.will_published ? 'yes' : 'no')));
    } catch (e) {
      replace(info, message('error', e.text || e.message));
    }
  }

  async function loadData() {
    const db = dbInput.value.trim();
    localStorage.setItem(DB_KEY, db);
    replace(latest, message('info', 'Loading…'));
    try {
      const [ms] = await query(`SHOW MEASUREMENTS ON ${ident(db)}`);
      if (ms.error) throw new Error(ms.error);
      const names = ((ms.series && ms.series[0] && ms.series[0].values) || []).map((v) => v[0]).slice(0, MEASUREMENTS_MAX);
      if (!names.length) {
        replace(latest, message('info', `No data in ${db}.`));
        draw(chart, []);
        return;
      }
      const where = `WHERE "device" = ${str(id)}`;
      const lastQ = names.map((m) => `SELECT last(*) FROM ${ident(m)} ${where}`).join('; ');
      const recentQ = names.map((m) => `SELECT mean(*) FROM ${ident(m)} ${where} AND time > now() - 1h GROUP BY time(1m) fill(none)`).join('; ');
      const now = Date.now();
      const [lastR, recentR] = await Promise.all([query(lastQ, { db }), query(recentQ, { db })]);
      const rows = [];
      lastR.forEach((r) => {
        for (const s of r.series || []) {
          const t = s.columns.indexOf('time');
          const row = s.values[0] || [];
          s.columns.forEach((c, i) => {
            if (i !== t) rows.push([s.name, c.replace(/^last_/, ''), row[i] === null || row[i] === undefined ? '' : String(row[i]), iso(row[t])]);
          });
        }
      });
      replace(latest, rows.length ? table(['measurement', 'field', 'latest value', 'time'], rows) : message('info', `Device ${id} wrote nothing to ${db}.`));
      draw(chart, lines(recentR.flatMap((r) => r.series || [])), { range: [now - 3600e3, now] });
    } catch (e) {
      replace(latest, message('error', e.text || e.message));
    }
  }

  view.append(
    h('p', {}, h('a', { href: '#/devices' }, '← All devices')),
    h('h1', {}, `Device ${id}`),
    info,
    h('h2', {}, 'Latest values'),
    h('form', { class: 'row', onsubmit: (ev) => { ev.preventDefault(); loadData(); } },
      field('Database (mqtt.database)', dbInput), h('button', { type: 'submit', class: 'secondary' }, 'Show')),
    latest,
    h('h2', {}, 'Last hour (1-minute means)'),
    chart,
  );
  loadStatus();
  loadData();
}

export function render(view, { rest, params }) {
  if (rest.length) devicePage(view, rest.join('/'));
  else listPage(view, params);
}
