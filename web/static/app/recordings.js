// @ts-check
// The recordings page (/recordings): what is being recorded, the files
// under --record-dir with download links and a delete button, and a form
// to record a live stream; GET/POST/DELETE on the management API. With
// auth on it needs an admin token (?token= or typed in; kept for the
// tab's session, and carried into download links as ?token=).
import { h, $ } from './ui.js';
import { adminAPI, adminGet, adminToken, onToken, showError } from './admin.js';

let timer = 0;

function size(n) {
  if (n >= 1e9) return (n / 1e9).toFixed(2) + ' GB';
  if (n >= 1e6) return (n / 1e6).toFixed(1) + ' MB';
  return Math.round(n / 1e3) + ' kB';
}

function duration(s) {
  const t = Math.round(s);
  return `${Math.floor(t / 3600)}:${String(Math.floor(t / 60) % 60).padStart(2, '0')}:${String(t % 60).padStart(2, '0')}`;
}

/** Calls the API; on success reloads the lists and says what happened. */
async function act(method, url, what) {
  try {
    await adminAPI(url, { method });
  } catch (e) {
    showError(`${what}: ${e.message}`);
    return;
  }
  $('#error').hidden = true;
  $('#done').textContent = what + ': done.';
  load();
}

function recorderRow(r) {
  const name = r.stream || r.room;
  const url = r.stream ? `/api/streams/${encodeURIComponent(name)}/record` : `/api/rooms/${encodeURIComponent(name)}/record`;
  const state = h('td', {}, r.state);
  if (r.error) state.append(h('span', { class: 'problem' }, r.error));
  return h('tr', {},
    h('th', { scope: 'row' }, (r.room ? 'room ' : '') + name),
    state,
    h('td', { class: 'num' }, String(r.frames || 0)),
    h('td', { class: 'num' }, String(r.dropped || 0)),
    h('td', {}, h('button', { class: 'btn', type: 'button', 'aria-label': `Stop recording ${name}`,
      onclick: () => act('DELETE', url, `Stop recording ${name}`) }, 'Stop')));
}

function fileRow(f) {
  const name = f.id.split('/').pop();
  const href = f.url + (adminToken() ? '?token=' + encodeURIComponent(adminToken()) : '');
  const actions = h('td', {}, h('a', { class: 'btn', href, download: name, 'aria-label': `Download ${name}` }, 'Download'));
  if (f.state !== 'recording') {
    actions.append(' ', h('button', { class: 'btn', type: 'button', 'aria-label': `Delete ${name}`,
      onclick: () => { if (confirm(`Delete ${name}? This cannot be undone.`)) act('DELETE', f.url, `Delete ${name}`); } }, 'Delete'));
  }
  return h('tr', {},
    h('th', { scope: 'row' }, name),
    h('td', {}, f.stream || (f.room ? 'room ' + f.room : '—')),
    h('td', {}, f.start ? f.start.replace('T', ' ').replace(/\.\d+Z$/, '') : '—'),
    h('td', { class: 'num' }, f.format === 'json' ? '—' : duration(f.duration)),
    h('td', { class: 'num' }, size(f.size)),
    h('td', {}, f.format === 'json' ? 'manifest' : f.state),
    actions);
}

function render(l) {
  const recs = l.recorders || [];
  $('#recorders').replaceChildren(...recs.map(recorderRow));
  if (recs.length === 0) $('#recorders').append(h('tr', {}, h('td', { colspan: '5', class: 'empty' }, 'Nothing is being recorded.')));
  const files = [...(l.files || [])].reverse(); // newest first
  $('#files').replaceChildren(...files.map(fileRow));
  if (files.length === 0) $('#files').append(h('tr', {}, h('td', { colspan: '7', class: 'empty' }, 'No recordings yet.')));
  const total = files.reduce((n, f) => n + f.size, 0);
  $('#summary').textContent = `${files.length} files, ${size(total)} in ${l.dir} · updated ${new Date().toLocaleTimeString()}`;
}

async function load() {
  clearTimeout(timer);
  const l = await adminGet('/api/recordings', 'the recordings');
  if (l) render(l);
  if ($('#token-form').hidden) timer = setTimeout(load, 5000); // not while waiting for a token
}

onToken(load);
$('#start-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const name = /** @type {HTMLInputElement} */ ($('#stream')).value.trim();
  act('POST', `/api/streams/${encodeURIComponent(name)}/record`, `Start recording ${name}`);
});
load();
