// @ts-check
// Small DOM helpers shared by the pages.

/**
 * Creates an element. Attributes starting with "on" become listeners; "class",
 * "text", "html" (trusted markup only: icons) and data-* are handled.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag @param {Record<string, any>} [attrs] @param {...(Node|string|null|undefined|false)} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'html') el.innerHTML = v;
    else if (k in el && typeof v !== 'string') /** @type {any} */ (el)[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c != null && c !== false) el.append(c);
  return el;
}

/**
 * The mark shown next to the name of a member whose identity the server
 * verified from their token (peers' "verified" flag): visible, and named for
 * screen readers. @param {string} identity
 */
export function verifiedMark(identity) {
  return h('span', { class: 'verified', role: 'img', 'aria-label': `verified as ${identity}`, title: `Verified: ${identity}`, text: '✓' });
}

/** @param {string} sel @param {ParentNode} [root] @returns {any} */
/** The first element matching sel. @param {string} sel @param {ParentNode} [root] @returns {HTMLElement} */
export const $ = (sel, root = document) => /** @type {HTMLElement} */ (root.querySelector(sel));

const P = (d) => `<svg viewBox="0 0 24 24" aria-hidden="true" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">${d}</svg>`;

/** Inline SVG icons (no external assets). */
export const icons = {
  mic: P('<rect x="9" y="3" width="6" height="11" rx="3"/><path d="M5 11a7 7 0 0 0 14 0M12 18v3"/>'),
  micOff: P('<path d="M3 3l18 18M9 9v2a3 3 0 0 0 5 2.2M15 10V6a3 3 0 0 0-5.7-1.3M5 11a7 7 0 0 0 11.5 5.3M19 11a7 7 0 0 1-.6 2.8M12 18v3"/>'),
  cam: P('<rect x="2" y="6" width="14" height="12" rx="2"/><path d="M16 10l6-3v10l-6-3z"/>'),
  camOff: P('<path d="M3 3l18 18M16 16H4a2 2 0 0 1-2-2V8a2 2 0 0 1 2-2h2M10 6h4a2 2 0 0 1 2 2v4l6-3v10"/>'),
  screen: P('<rect x="2" y="4" width="20" height="13" rx="2"/><path d="M8 21h8M12 17v4M9 10l3-3 3 3M12 7v7"/>'),
  chat: P('<path d="M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.6A8 8 0 1 1 21 12z"/>'),
  file: P('<path d="M14 3H6a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V9z"/><path d="M14 3v6h6M12 18v-6M9 15l3-3 3 3"/>'),
  stats: P('<path d="M3 20h18M6 16V10M11 16V5M16 16v-7M21 16v-3"/>'),
  gear: P('<circle cx="12" cy="12" r="3"/><path d="M19.4 15a1.7 1.7 0 0 0 .3 1.8l.1.1a2 2 0 1 1-2.8 2.8l-.1-.1a1.7 1.7 0 0 0-1.8-.3 1.7 1.7 0 0 0-1 1.5V21a2 2 0 1 1-4 0v-.1a1.7 1.7 0 0 0-1.1-1.5 1.7 1.7 0 0 0-1.8.3l-.1.1a2 2 0 1 1-2.8-2.8l.1-.1a1.7 1.7 0 0 0 .3-1.8 1.7 1.7 0 0 0-1.5-1H3a2 2 0 1 1 0-4h.1a1.7 1.7 0 0 0 1.5-1.1 1.7 1.7 0 0 0-.3-1.8l-.1-.1a2 2 0 1 1 2.8-2.8l.1.1a1.7 1.7 0 0 0 1.8.3H9a1.7 1.7 0 0 0 1-1.5V3a2 2 0 1 1 4 0v.1a1.7 1.7 0 0 0 1 1.5 1.7 1.7 0 0 0 1.8-.3l.1-.1a2 2 0 1 1 2.8 2.8l-.1.1a1.7 1.7 0 0 0-.3 1.8V9a1.7 1.7 0 0 0 1.5 1H21a2 2 0 1 1 0 4h-.1a1.7 1.7 0 0 0-1.5 1z"/>'),
  record: P('<circle cx="12" cy="12" r="8"/><circle cx="12" cy="12" r="3" fill="currentColor"/>'),
  snap: P('<path d="M4 8h3l2-3h6l2 3h3a1 1 0 0 1 1 1v10a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1V9a1 1 0 0 1 1-1z"/><circle cx="12" cy="13" r="4"/>'),
  hangup: P('<path d="M3 15.5c5-5 13-5 18 0l-2.5 2.5-3.5-2v-3c-2-.7-4-.7-6 0v3l-3.5 2z" fill="currentColor"/>'),
  link: P('<path d="M10 14a5 5 0 0 0 7 0l3-3a5 5 0 0 0-7-7l-1 1M14 10a5 5 0 0 0-7 0l-3 3a5 5 0 0 0 7 7l1-1"/>'),
  close: P('<path d="M6 6l12 12M18 6L6 18"/>'),
  send: P('<path d="M22 2L11 13M22 2l-7 20-4-9-9-4z"/>'),
  users: P('<circle cx="9" cy="8" r="4"/><path d="M2 21a7 7 0 0 1 14 0M16 4a4 4 0 0 1 0 8M22 21a7 7 0 0 0-4-6.3"/>'),
  sparkle: P('<path d="M12 3l1.8 5.2L19 10l-5.2 1.8L12 17l-1.8-5.2L5 10l5.2-1.8zM19 17l.8 2.2L22 20l-2.2.8L19 23l-.8-2.2L16 20l2.2-.8z"/>'),
  warn: P('<path d="M12 3l10 18H2z"/><path d="M12 10v5M12 18h.01"/>'),
};

/**
 * A labelled icon button.
 * @param {{id?: string, icon: string, label: string, title?: string, onclick?: (e: Event) => void, class?: string}} o
 */
export function iconButton(o) {
  return h('button', { type: 'button', id: o.id, class: 'ctl ' + (o.class || ''), title: o.title || o.label, onclick: o.onclick },
    h('span', { class: 'ico', html: icons[o.icon] || '' }),
    h('span', { class: 'lbl', text: o.label }));
}

/** @param {HTMLButtonElement} btn @param {string} icon @param {string} label */
export function setButton(btn, icon, label) {
  btn.querySelector('.ico').innerHTML = icons[icon] || '';
  btn.querySelector('.lbl').textContent = label;
  const keys = btn.getAttribute('aria-keyshortcuts');
  btn.title = keys ? `${label} (${keys})` : label;
}

/**
 * Says text to screen-reader users, politely, through the page's one live
 * region (#announcer, visually hidden): joins and leaves, chat while its
 * panel is closed, connection changes, recording. The rest of the page is
 * not live, so nothing else is read out unasked.
 * @param {string} text
 */
export function announce(text) {
  let box = document.getElementById('announcer');
  if (!box) document.body.append((box = h('div', { id: 'announcer', class: 'sr-only', role: 'status', 'aria-live': 'polite' })));
  // Each message is a new node, so the same words twice are read twice;
  // the last few stay (tests and screen-reader history read them).
  box.append(h('p', { text }));
  while (box.childElementCount > 5) box.firstElementChild.remove();
}

/**
 * Shows a short message at the bottom of the screen.
 * @param {string} text @param {'info'|'error'|'ok'} [kind]
 */
export function toast(text, kind = 'info') {
  let box = $('#toasts');
  if (!box) document.body.append((box = h('div', { id: 'toasts' })));
  const t = h('div', { class: `toast ${kind}`, text, 'aria-hidden': 'true' });
  announce(text);
  box.append(t);
  setTimeout(() => t.classList.add('out'), 3500);
  setTimeout(() => t.remove(), 4000);
}

/** @param {number} ms */
export function clock(ms) {
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** Triggers a download of a blob. @param {Blob} blob @param {string} name */
export function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

/** @param {string} name */
export function initials(name) {
  const parts = String(name || '?').trim().split(/\s+/);
  return ((parts[0] || '?')[0] + (parts.length > 1 ? parts[parts.length - 1][0] : '')).toUpperCase();
}

/** Deterministic pleasant hue for a name. @param {string} s */
export function hue(s) {
  let x = 0;
  for (const c of String(s)) x = (x * 31 + c.charCodeAt(0)) >>> 0;
  return x % 360;
}

export const store = {
  /** @param {string} k */
  get(k, def = '') {
    try {
      return localStorage.getItem('parley.' + k) ?? def;
    } catch {
      return def;
    }
  },
  /** @param {string} k @param {string} v */
  set(k, v) {
    try {
      localStorage.setItem('parley.' + k, v);
    } catch {
      /* private mode */
    }
  },
};
