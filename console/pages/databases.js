// Databases: every database with its series count (from /metrics), retention policies and
// measurements (SHOW statements), and the continuous queries.

import { metricsText, query, series } from '../api.js';
import { field, h, message, replace, table } from '../dom.js';
import { ident, num } from '../format.js';
import { Scrape } from '../prom.js';

export const TITLE = 'Databases';

/** Rows of a SHOW answer's first series as objects keyed by column. */
function objects(s) {
  if (!s) return [];
  return s.values.map((row) => Object.fromEntries(s.columns.map((c, i) => [c, row[i]])));
}

function exploreLink(db, m) {
  const q = `SELECT * FROM ${ident(m)} WHERE $timeFilter LIMIT 1000`;
  const href = `#/explore?${new URLSearchParams({ db, q })}`;
  return h('a', { href }, m);
}

async function detail(db, seriesCount) {
  const results = await query(`SHOW RETENTION POLICIES ON ${ident(db)}; SHOW MEASUREMENTS ON ${ident(db)}`);
  const [rps, ms] = results;
  const parts = [];
  if (rps && rps.error) parts.push(message('error', rps.error));
  const policies = objects(rps && rps.series && rps.series[0]);
  parts.push(
    table(
      ['retention policy', 'duration', 'shard group', 'default'],
      policies.map((p) => [p.name, p.duration, p.shardGroupDuration || '', p.default ? 'yes' : '']),
      'Retention policies',
    ),
  );
  if (ms && ms.error) parts.push(message('error', ms.error));
  const names = ((ms && ms.series && ms.series[0] && ms.series[0].values) || []).map((v) => v[0]);
  parts.push(
    h('h3', {}, `Measurements (${names.length})`),
    names.length ? h('ul', { class: 'measurements' }, names.map((m) => h('li', {}, exploreLink(db, m)))) : message('info', 'No measurements.'),
  );
  return { parts, measurements: names.length, policies: policies.length, seriesCount };
}

export function render(view, { access }) {
  const list = h('div', { id: 'databases' }, message('info', 'Loading…'));
  const cqs = h('div', { id: 'cqs' });
  view.append(h('h1', {}, 'Databases'), list, h('h2', {}, 'Continuous queries'), cqs);

  async function showOne(db) {
    const counts = new Scrape(await metricsText().catch(() => '')).by('strata_engine_series', 'db');
    const d = await detail(db, counts.get(db));
    return h('section', { class: 'db', dataset: { db } }, h('h2', {}, db), h('p', { class: 'muted' }, `${num(d.seriesCount ?? 0)} series`), d.parts);
  }

  async function load() {
    let names;
    try {
      names = (await series('SHOW DATABASES')).flatMap((s) => s.values.map((v) => v[0]));
    } catch (e) {
      if (e.status !== 403) {
        replace(list, message('error', e.text || e.message));
        return;
      }
      // A token limited to some databases cannot list them all: ask for one by name.
      const input = h('input', { id: 'db-name', name: 'db', spellcheck: 'false' });
      const out = h('div', {});
      replace(
        list,
        message('info', 'This token may not list every database; name one it can read.'),
        h('form', {
          class: 'row',
          onsubmit: async (ev) => {
            ev.preventDefault();
            try {
              replace(out, await showOne(input.value.trim()));
            } catch (err) {
              replace(out, message('error', err.text || err.message));
            }
          },
        }, field('Database', input), h('button', { type: 'submit' }, 'Show')),
        out,
      );
      return;
    }
    if (!names.length) {
      replace(list, message('info', 'No databases yet: the first write creates one.'));
      return;
    }
    const counts = new Scrape(await metricsText().catch(() => '')).by('strata_engine_series', 'db');
    const rows = [];
    const sections = [];
    for (const db of names) {
      try {
        const d = await detail(db, counts.get(db));
        rows.push([h('a', { href: `#db-${encodeURIComponent(db)}` }, db), num(d.seriesCount ?? 0), num(d.measurements), num(d.policies)]);
        sections.push(h('section', { class: 'db', id: `db-${encodeURIComponent(db)}`, dataset: { db } }, h('h2', {}, db), d.parts));
      } catch (e) {
        rows.push([db, '', '', '']);
        sections.push(h('section', { class: 'db' }, h('h2', {}, db), message('error', e.text || e.message)));
      }
    }
    replace(list, table(['database', 'series', 'measurements', 'retention policies'], rows), sections);
  }

  async function loadCqs() {
    try {
      const s = await series('SHOW CONTINUOUS QUERIES');
      const rows = s.flatMap((x) => objects(x).map((cq) => [x.name || '', cq.name, h('code', {}, cq.query)]));
      replace(cqs, rows.length ? table(['database', 'name', 'query'], rows) : message('info', 'No continuous queries.'));
    } catch (e) {
      replace(cqs, message(e.status === 403 ? 'info' : 'error', e.text || e.message));
    }
  }

  if (access === 'limited') replace(cqs, message('info', 'Continuous queries: name a database above.'));
  load();
  if (access !== 'limited') loadCqs();
}
