// @ts-check
// The operators' status page (/status): every stream with its source,
// codecs, bitrate, viewers per protocol, recordings and pushes, and with
// --cluster the cluster's nodes with their addresses and load, from
// GET /api/status every two seconds. With auth on it needs an admin token
// (?token= or typed in; kept for the tab's session).
import { h, $ } from './ui.js';
import { adminGet, onToken } from './admin.js';

/** Whether the reader paused the refresh (#pause). */
const paused = () => /** @type {HTMLInputElement} */ ($('#pause')).checked;

let timer = 0;

function kbps(bps) {
  return bps >= 1e6 ? (bps / 1e6).toFixed(1) + ' Mbit/s' : Math.round(bps / 1000) + ' kbit/s';
}

function cell(text, cls) {
  return h('td', cls ? { class: cls } : {}, text);
}

function row(s) {
  const codecs = s.tracks.map((t) => t.codec + (t.layers ? ` (${t.layers.join(', ')})` : '')).join(' + ') || '—';
  const source = h('td', {}, s.source || (s.live ? 'webrtc' : '—'));
  if (s.state) source.append(h('span', { class: 'state' }, s.state));
  if (s.error) source.append(h('span', { class: 'problem' }, s.error));
  for (const n of s.notes || []) source.append(h('span', { class: 'problem' }, n));
  const v = s.viewers || {};
  const rec = (s.recordings || []).map((r) => r.state + (r.error ? ': ' + r.error : '')).join(', ') || '—';
  const push = (s.pushes || []).map((p) => p.url + ' ' + p.state + (p.error ? ': ' + p.error : '')).join(', ') || '—';
  return h('tr', {},
    h('th', { scope: 'row' }, s.name),
    source,
    cell(codecs),
    cell(s.live ? kbps(s.bitrate) : '—', 'num'),
    cell(String(v.webrtc || 0), 'num'),
    cell(String(v.hls || 0), 'num'),
    cell(String(v.rtsp || 0), 'num'),
    cell(String(v.rtmp || 0), 'num'),
    cell(String(v.srt || 0), 'num'),
    cell(rec),
    cell(push));
}

/** One node of the cluster; self is the node serving this page. */
function nodeRow(n, self) {
  const load = n.load || {};
  return h('tr', {},
    h('th', { scope: 'row' }, n.id + (n.id === self ? ' (this node)' : '')),
    cell(n.http || '—'),
    cell(n.media || '—'),
    cell(n.turn || '—'),
    cell(Math.round((load.cpu || 0) * 100) + ' %', 'num'),
    cell(String(load.sessions || 0), 'num'),
    cell(kbps(load.egress_bits || 0), 'num'),
    cell(new Date(n.seen).toLocaleTimeString()));
}

/** The cluster's part of the summary and its table (hidden when alone). */
function renderCluster(c) {
  $('#cluster').hidden = !c;
  if (!c) return '';
  $('#nodes').replaceChildren(...c.nodes.map((n) => nodeRow(n, c.node)));
  return c.connected ? ` · cluster of ${c.nodes.length} nodes` : ' · cluster: not connected to NATS';
}

function render(st) {
  const rows = $('#rows');
  rows.replaceChildren(...st.streams.map(row));
  if (st.streams.length === 0) rows.append(h('tr', {}, h('td', { colspan: '11', class: 'empty' }, 'No streams.')));
  const up = Math.round(st.uptime_seconds);
  $('#summary').textContent = `Up ${Math.floor(up / 3600)} h ${Math.floor(up / 60) % 60} min · ${st.rooms} rooms, ${st.members} members · ` +
    `${st.turn_allocations} TURN allocations${renderCluster(st.cluster)} · updated ${new Date(st.time).toLocaleTimeString()}`;
}

async function load() {
  clearTimeout(timer);
  const st = await adminGet('/api/status', 'the status');
  if (st) render(st);
  // Waiting for a token (the form is shown) stops the updates.
  if (!paused() && $('#token-form').hidden) timer = setTimeout(load, 2000);
}

onToken(load);
$('#pause').addEventListener('change', () => { if (!paused()) load(); else clearTimeout(timer); });
load();
