// @ts-check
// Shared by the light-show host page and screen page: DOM helper,
// palettes, URL parameters (the control socket is lib/show.js).

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v == null) continue;
    if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k in e && typeof v !== 'string') e[k] = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c != null && c !== false) e.append(c.nodeType ? c : String(c));
  return e;
}

// showName reads <name> from /show/<name>[/screen].
export function showName() {
  const parts = location.pathname.split('/').filter(Boolean);
  return decodeURIComponent(parts[1] || '');
}

export const params = new URLSearchParams(location.search);
export const token = params.get('token') || '';

export function fmtHz(f) {
  if (f >= 1000) return (f / 1000).toFixed(f >= 10000 ? 0 : 1).replace(/\.0$/, '') + ' kHz';
  return Math.round(f) + ' Hz';
}

export function fmtBand(b) {
  return b ? fmtHz(b[0]) + ' – ' + fmtHz(b[1]) : '—';
}

function hexRGB(hex) {
  let h = (hex || '#ffffff').slice(1);
  if (h.length === 3) h = h.split('').map((c) => c + c).join('');
  const n = parseInt(h, 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}
export { hexRGB };

function hsl(h, s, l) {
  s /= 100; l /= 100;
  const k = (n) => (n + h / 30) % 12;
  const a = s * Math.min(l, 1 - l);
  const f = (n) => l - a * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)));
  return [Math.round(255 * f(0)), Math.round(255 * f(8)), Math.round(255 * f(4))];
}

export const PALETTES = {
  redblue: 'Red ↔ blue',
  hue: 'Hue wheel',
  beat: 'Beat flash',
  mono: 'One colour',
};

// paint returns the [r, g, b] a screen shows for a level 0..255.
// ctx: {palette, color, index, count, beat (0..1, for "beat")}.
export function paint(level, ctx) {
  const l = Math.max(0, Math.min(255, Math.round(level)));
  switch (ctx.palette) {
    case 'hue': {
      // Each screen has its place on the wheel (the wall is a rainbow);
      // loudness lights it up.
      const n = Math.max(1, ctx.count || 1);
      const h = ((ctx.index || 0) / n) * 300;
      return hsl(h, 100, 4 + (l / 255) * 56);
    }
    case 'beat': {
      const v = Math.round(255 * Math.max(0, Math.min(1, ctx.beat || 0)));
      return [v, v, v];
    }
    case 'mono': {
      const [r, g, b] = hexRGB(ctx.color);
      return [Math.round((r * l) / 255), Math.round((g * l) / 255), Math.round((b * l) / 255)];
    }
    default: // the seed's red ↔ blue
      return [255 - l, 0, l];
  }
}

/** @param {number[]} rgb [r, g, b] */
export function rgbCSS([r, g, b]) {
  return `rgb(${r} ${g} ${b})`;
}

// The audible range the server splits across screens (internal/show).
export const MIN_FREQ = 40;
export const MAX_FREQ = 16000;

// checkName shows a full-page message and returns false for a show name
// the server would refuse (1-59 of A-Z a-z 0-9 _ . -).
export function checkName(name) {
  if (/^[A-Za-z0-9_.-]{1,59}$/.test(name)) return true;
  document.body.replaceChildren(el('div', { class: 'boot' },
    el('p', {}, `"${name}" is not a show name: use 1–59 letters, digits, "_", "." or "-", e.g. /show/party.`)));
  return false;
}
