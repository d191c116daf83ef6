// Ingest health, from `/metrics` scraped every few seconds (rates are the difference of two
// scrapes), and the MQTT dead letters with replay.

import { call, getJson, metricsText } from '../api.js';
import { h, message, replace, table } from '../dom.js';
import { bytes, iso, num } from '../format.js';
import { rate, Scrape } from '../prom.js';

export const TITLE = 'Ingest health';

const SCRAPE_EVERY_MS = 5000;
const FIRST_RATE_AFTER_MS = 1000;

function card(title, id, rows) {
  return h('section', { class: 'card', id, 'aria-label': title }, h('h2', {}, title), h('dl', {}, rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])));
}

function perSec(v) {
  return v === null ? '…' : `${num(v, 1)}/s`;
}

/** The cards for one scrape (and the one before it, for rates). */
function cards(prev, cur) {
  const protocols = [...cur.by('strata_ingest_database_points_total', 'protocol').keys()].sort();
  const writes = protocols.length
    ? protocols.map((p) => [`points/s, ${p}`, perSec(rate(prev, cur, 'strata_ingest_database_points_total', { protocol: p }))])
    : [['points/s', perSec(rate(prev, cur, 'strata_ingest_points_total'))]];
  writes.push(['MQTT messages/s', perSec(rate(prev, cur, 'strata_mqtt_messages_qos0_total') === null ? null : rate(prev, cur, 'strata_mqtt_messages_qos0_total') + rate(prev, cur, 'strata_mqtt_messages_qos1_total'))]);
  writes.push(['HTTP write requests/s', perSec(rate(prev, cur, 'strata_ingest_requests_total'))]);

  const nonzero = (name, label) => [...cur.by(name, label)].filter(([, v]) => v > 0).map(([k, v]) => [k, num(v)]);
  const lines = nonzero('strata_ingest_lines_rejected_total', 'reason');
  const requests = nonzero('strata_ingest_requests_rejected_total', 'reason');
  const back = cur.select('strata_backpressure_events_total').filter((s) => s.value > 0).map((s) => [`${s.labels.protocol} ${s.labels.reason}`, num(s.value)]);
  const rejections = [
    ['lines rejected', num(cur.sum('strata_ingest_lines_rejected_total'))],
    ...lines.map(([k, v]) => [`  line: ${k}`, v]),
    ['requests rejected', num(cur.sum('strata_ingest_requests_rejected_total'))],
    ...requests.map(([k, v]) => [`  request: ${k}`, v]),
    ['backpressure events', num(cur.sum('strata_backpressure_events_total'))],
    ...back.map(([k, v]) => [`  ${k}`, v]),
    ['MQTT dead letters', num(cur.sum('strata_mqtt_dead_letters_total'))],
    ['MQTT ACL denials', num(cur.sum('strata_mqtt_acl_denied_total'))],
  ];

  const fsyncs = rate(prev, cur, 'strata_wal_fsyncs_total');
  let fsyncMean = null;
  if (prev) {
    const dn = cur.sum('strata_wal_fsync_duration_seconds_count') - prev.sum('strata_wal_fsync_duration_seconds_count');
    const ds = cur.sum('strata_wal_fsync_duration_seconds_sum') - prev.sum('strata_wal_fsync_duration_seconds_sum');
    fsyncMean = dn > 0 ? `${num((ds / dn) * 1e3, 2)} ms` : '–';
  }
  const poisoned = cur.sum('strata_engine_poisoned') > 0;
  const wal = [
    ['engine', poisoned ? 'POISONED: restart needed' : 'ok'],
    ['WAL appends', perSec(rate(prev, cur, 'strata_wal_appends_total'))],
    ['WAL bytes', perSec(rate(prev, cur, 'strata_wal_appended_bytes_total'))],
    ['fsyncs', perSec(fsyncs)],
    ['mean fsync', fsyncMean === null ? '…' : fsyncMean],
    ['flushes', num(cur.sum('strata_engine_flushes_total'))],
    ['flushed', bytes(cur.sum('strata_engine_flush_bytes_total'))],
    ['write stalls', num(cur.sum('strata_engine_write_stalls_total'))],
    ['refused, flush behind', num(cur.sum('strata_engine_overloaded_total'))],
    ['compactions', num(cur.sum('strata_engine_compactions_total'))],
  ];
  const memory = [
    ['memtables', bytes(cur.sum('strata_engine_memtable_bytes'))],
    ['write buffers in use', bytes(cur.sum('strata_ingest_write_memory_bytes'))],
    ['MQTT connections', num(cur.sum('strata_mqtt_connections_active'))],
    ['uptime', `${num(cur.sum('strata_process_uptime_seconds'), 0)} s`],
  ];
  const segBytes = cur.by('strata_engine_segment_bytes', 'db');
  const segFiles = cur.by('strata_engine_segments', 'db');
  const disk = [...segBytes.keys()].sort().map((db) => [db, `${bytes(segBytes.get(db))} in ${num(segFiles.get(db) || 0)} segments`]);
  return [
    card('Writes', 'writes', writes),
    card('Rejections', 'rejections', rejections),
    card('WAL and flushes', 'wal', wal),
    card('Memory', 'memory', memory),
    card('Disk per database', 'disk', disk.length ? disk : [['segments', 'none yet']]),
  ];
}

export function render(view, { access }) {
  const grid = h('div', { class: 'cards', id: 'health' }, message('info', 'Reading /metrics…'));
  const letters = h('div', { id: 'dead-letters' });
  const replayStatus = h('div', { id: 'replay-status', 'aria-live': 'polite' });
  let prev = null;
  let timer = null;
  let stopped = false;

  async function scrape() {
    try {
      const cur = new Scrape(await metricsText());
      if (stopped) return;
      replace(grid, cards(prev, cur));
      prev = cur;
    } catch (e) {
      replace(grid, message('error', `Cannot read /metrics: ${e.text || e.message}`));
    }
    if (!stopped) timer = setTimeout(scrape, prev && timer ? SCRAPE_EVERY_MS : FIRST_RATE_AFTER_MS);
  }

  async function replay(id) {
    const qs = id === undefined ? '' : `?id=${encodeURIComponent(id)}`;
    replace(replayStatus, message('info', 'Replaying…'));
    try {
      const r = await (await call(`/api/v1/mqtt/dead-letters/replay${qs}`, { method: 'POST' })).json();
      const failed = r.failed || [];
      replace(
        replayStatus,
        message(failed.length ? 'error' : 'ok', `Replayed ${r.replayed.length}, failed ${failed.length}.`),
        failed.map((f) => message('error', `Dead letter ${f.id}: ${f.reason}`)),
      );
      loadLetters();
    } catch (e) {
      replace(replayStatus, message('error', `Replay refused: ${e.text || e.message}`));
    }
  }

  async function loadLetters() {
    try {
      const r = await getJson('/api/v1/mqtt/dead-letters?limit=100');
      const rows = r.dead_letters.map((d) => [
        String(d.id),
        iso(d.time_ms),
        d.device || '',
        d.topic,
        d.reason,
        h('code', {}, d.payload.length > 200 ? `${d.payload.slice(0, 197)}…` : d.payload),
        h('button', { type: 'button', class: 'small', 'aria-label': `Replay dead letter ${d.id}`, onclick: () => replay(d.id) }, 'Replay'),
      ]);
      replace(
        letters,
        message('info', `${r.total} dead letters${r.total > rows.length ? `, the oldest ${rows.length} shown` : ''}.`),
        rows.length ? table(['id', 'time', 'device', 'topic', 'reason', 'payload', ''], rows) : null,
      );
    } catch (e) {
      replace(letters, message('error', `Cannot list dead letters: ${e.text || e.message}`));
    }
  }

  view.append(
    h('h1', {}, 'Ingest health'),
    h('p', { class: 'muted' }, `From /metrics every ${SCRAPE_EVERY_MS / 1000} s; rates are over the last interval.`),
    grid,
    h(
      'section',
      { class: 'letters', 'aria-labelledby': 'dl-title' },
      h('h2', { id: 'dl-title' }, 'MQTT dead letters'),
      h('p', { class: 'muted' }, 'Messages that could not be stored whole. A replay writes them again; those stored whole are deleted.'),
      h('div', { class: 'row' },
        h('button', { type: 'button', id: 'replay-all', onclick: () => replay() }, 'Replay all'),
        h('button', { type: 'button', class: 'secondary', onclick: loadLetters }, 'Refresh')),
      replayStatus,
      letters,
    ),
  );
  if (access === 'limited') replace(letters, message('info', 'Dead letters need an admin token.'));
  else loadLetters();
  scrape();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
