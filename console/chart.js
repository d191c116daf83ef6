// Time-series charts with uPlot (vendored, console/vendor/): InfluxQL series in, one chart with
// a line per numeric column of each series, a legend, drag-to-zoom on the time axis
// (double-click zooms back out) and a tooltip-like legend that follows the cursor.

import uPlot from './vendor/uPlot.esm.js';
import { h, replace } from './dom.js';

const COLORS = ['#2f6fdf', '#d9480f', '#2b8a3e', '#ae3ec9', '#e67700', '#0b7285', '#c2255c', '#5c940d'];

/** A readable name for one column of one series: `climate.temp {room=lab}`. */
export function label(s, column) {
  const tags = Object.entries(s.tags || {}).map(([k, v]) => `${k}=${v}`);
  return `${s.name || ''}${s.name ? '.' : ''}${column}${tags.length ? ` {${tags.join(', ')}}` : ''}`;
}

/**
 * The lines to draw from InfluxQL series (times in ms): `[{label, times, values}]`, one per
 * column that holds numbers. Booleans and strings are left to the table.
 */
export function lines(seriesList) {
  const out = [];
  for (const s of seriesList) {
    const t = s.columns.indexOf('time');
    if (t < 0) continue;
    s.columns.forEach((c, i) => {
      if (i === t) return;
      if (!s.values.some((row) => typeof row[i] === 'number')) return;
      out.push({
        label: label(s, c),
        times: s.values.map((row) => row[t]),
        values: s.values.map((row) => (typeof row[i] === 'number' ? row[i] : null)),
      });
    });
  }
  return out;
}

/**
 * Draws `ls` (from [`lines`]) into `el`, replacing what was there; `range` is the time range
 * asked for (`[from, to]`, Unix ms), if any. Returns the uPlot instance
 * (or null when there is nothing to draw). `el.dataset.points` is the number of points drawn
 * and `el.dataset.lines` the number of lines (what the browser tests check).
 */
export function draw(el, ls, { height = 320, range } = {}) {
  if (el._plot) {
    el._plot.destroy();
    el._plot = null;
  }
  if (el._resize) el._resize.disconnect();
  if (!ls.length) {
    replace(el);
    el.dataset.points = '0';
    el.dataset.lines = '0';
    return null;
  }
  // uPlot wants one shared x axis: the union of every line's times, each line null where it
  // has no point (spanGaps joins across those).
  const xs = [...new Set(ls.flatMap((l) => l.times))].sort((a, b) => a - b);
  const at = new Map(xs.map((x, i) => [x, i]));
  const ys = ls.map((l) => {
    const y = new Array(xs.length).fill(null);
    l.times.forEach((t, i) => {
      y[at.get(t)] = l.values[i];
    });
    return y;
  });
  const points = ls.reduce((n, l) => n + l.values.filter((v) => v !== null).length, 0);
  replace(el);
  const wrap = h('div', { class: 'plot' });
  el.append(wrap);
  const opts = {
    width: Math.max(320, el.clientWidth || 800),
    height,
    scales: { x: { time: true } },
    cursor: { drag: { x: true, y: false, setScale: true } },
    legend: { live: true },
    series: [
      { label: 'time', value: (u, v) => (v === null ? '–' : new Date(v * 1000).toISOString()) },
      ...ls.map((l, i) => ({
        label: l.label,
        stroke: COLORS[i % COLORS.length],
        width: 1.5,
        spanGaps: true,
        points: { show: xs.length <= 200 },
      })),
    ],
  };
  const plot = new uPlot(opts, [xs.map((x) => x / 1000), ...ys], wrap);
  // Show the whole range asked for (a device that reported once in the last hour is a point
  // in an hour, not a point alone); a lone point without a range gets a minute either side.
  // Zooming works from there as usual.
  if (range) plot.setScale('x', { min: range[0] / 1000, max: range[1] / 1000 });
  else if (xs.length === 1) plot.setScale('x', { min: xs[0] / 1000 - 60, max: xs[0] / 1000 + 60 });
  el._plot = plot;
  // The canvas says nothing to a screen reader: name what it shows (the table below it, on
  // Explore, has the numbers).
  wrap.setAttribute('role', 'img');
  wrap.setAttribute('aria-label', `Chart of ${ls.length} series, ${points} points: ${ls.map((l) => l.label).join('; ')}`);
  el.dataset.points = String(points);
  el.dataset.lines = String(ls.length);
  el._resize = new ResizeObserver(() => {
    const w = Math.max(320, el.clientWidth);
    if (Math.abs(w - plot.width) > 4) plot.setSize({ width: w, height });
  });
  el._resize.observe(el);
  return plot;
}
