// A parser for the Prometheus text format (what `/metrics` answers) and rates between two
// scrapes. Enough of the format for Strata's own output: comments, `name{l="v",...} value`,
// escaped label values; timestamps after the value are ignored.

/** Parses the text into `[{name, labels, value}]`. */
export function parse(text) {
  const out = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    let i = 0;
    while (i < line.length && line[i] !== '{' && line[i] !== ' ') i++;
    const name = line.slice(0, i);
    const labels = {};
    if (line[i] === '{') {
      i++;
      while (i < line.length && line[i] !== '}') {
        const eq = line.indexOf('=', i);
        if (eq < 0) break;
        const key = line.slice(i, eq).trim().replace(/^,/, '').trim();
        i = eq + 1;
        if (line[i] !== '"') break;
        i++;
        let v = '';
        while (i < line.length && line[i] !== '"') {
          if (line[i] === '\\' && i + 1 < line.length) {
            const n = line[++i];
            v += n === 'n' ? '\n' : n;
          } else v += line[i];
          i++;
        }
        labels[key] = v;
        i++;
        if (line[i] === ',') i++;
      }
      i++;
    }
    const value = Number(line.slice(i).trim().split(/\s+/)[0]);
    if (name) out.push({ name, labels, value });
  }
  return out;
}

/** A scrape: the samples and when it was taken. */
export class Scrape {
  constructor(text, at = performance.now()) {
    this.samples = parse(text);
    this.at = at;
  }
  /** Samples of `name` whose labels include `match`. */
  select(name, match = {}) {
    return this.samples.filter(
      (s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v),
    );
  }
  /** Sum of the selected samples (0 when none). */
  sum(name, match) {
    return this.select(name, match).reduce((a, s) => a + s.value, 0);
  }
  /** Sums of `name` grouped by the value of `label`: `Map(value -> sum)`. */
  by(name, label) {
    const m = new Map();
    for (const s of this.select(name)) m.set(s.labels[label], (m.get(s.labels[label]) || 0) + s.value);
    return m;
  }
}

/** Per-second rate of a counter between two scrapes (null without an earlier one). */
export function rate(prev, cur, name, match) {
  if (!prev) return null;
  const dt = (cur.at - prev.at) / 1000;
  if (dt <= 0) return null;
  // A restart resets counters: a negative delta is not a rate.
  return Math.max(0, cur.sum(name, match) - prev.sum(name, match)) / dt;
}
