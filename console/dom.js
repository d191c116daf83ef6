// DOM helpers. Everything that comes from the server (names, tags, values, error messages) is
// put in the page as text nodes or attribute values, never parsed as HTML: there is no
// innerHTML anywhere in the console, so a measurement named `<img onerror=...>` is text.

/** `h('a', {href: '#/x', class: 'c', onclick: f}, 'text', child, [more])`. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value' || k === 'checked' || k === 'selected') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

/** Appends text or nodes (nested arrays flattened; null and false skipped). */
export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** Replaces every child of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A message line: `kind` is `error` (announced at once), `ok` or `info`. */
export function message(kind, text) {
  return h('p', { class: `msg ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
}

/** A table from column names and rows of cells (text or nodes). */
export function table(columns, rows, caption) {
  return h(
    'table',
    { class: 'grid' },
    caption ? h('caption', {}, caption) : null,
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((cell) => h('td', {}, cell))))),
  );
}

/** A labelled form control: `<label>Text <input ...></label>`. */
export function field(label, control) {
  return h('label', { class: 'field' }, h('span', {}, label), control);
}
