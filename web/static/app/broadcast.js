// @ts-check
// Broadcast publisher page (/b/<stream>): camera, screen, screen + camera or
// microphone only, published with WHIP — exactly what OBS or GStreamer would
// do, so viewers (/w/<stream>) cannot tell the difference.
import { h, $, icons, toast, store } from './ui.js';
import { LocalMedia, describeMediaError } from './media.js';
import { publishMedia } from '../lib/whip.js';
import { serverInfo } from '../lib/api.js';
import { BroadcastChat, chatRoom } from '../lib/chat.js';
import { chatBox } from './broadcast-chat.js';
import { watchStreamStatus } from '../lib/stream-status.js';

const stream = decodeURIComponent(location.pathname.replace(/^\/b\/?/, '').replace(/\/+$/, ''));
const q = new URLSearchParams(location.search);

const app = {
  stream,
  token: q.get('token') || sessionStorage.getItem('parley.token.b.' + stream) || '',
  source: /** @type {'camera'|'screen'|'pip'|'mic'|'test'} */ ('camera'),
  /** @type {{track: MediaStreamTrack, stop: () => void}|null} */
  pattern: null,
  /** 'off' | 'starting' | 'live' | 'reconnecting' | 'error' */
  state: 'off',
  media: new LocalMedia({ cam: store.get('cam'), mic: store.get('mic'), res: q.get('res') || '720', fps: Number(q.get('fps') || 30) }),
  /** @type {any} the WHIP session (whip.js Session + .audio/.video senders) */
  session: null,
  viewers: 0,
  live: false,
  /** @type {BroadcastChat|null} */
  chat: null,
  sent: { bytes: 0, at: 0, kbps: 0, width: 0, height: 0, layers: 0 },
};
// The page's library object, for debugging and the browser tests: the WHIP
// session (whip.js Session: pc, location, audio/video senders) and nothing
// of the page's state.
/** @type {any} */ (window).parleyApp = Object.freeze({ get session() { return app.session; } });

function setState(s, text) {
  app.state = s;
  document.body.dataset.state = s;
  const air = $('#air');
  air.dataset.state = s;
  air.textContent = { off: 'Off air', starting: 'Starting…', live: 'Live', reconnecting: 'Reconnecting…', error: 'Off air' }[s] || s;
  $('#live-badge').hidden = s !== 'live';
  $('#go-live').hidden = s === 'live' || s === 'starting' || s === 'reconnecting';
  $('#stop').hidden = !$('#go-live').hidden;
  const st = $('#status');
  st.className = 'media-status' + (s === 'error' ? ' error' : '');
  st.textContent = text || '';
}

/** Opens what the chosen source needs; the preview follows LocalMedia's output. */
async function openSource() {
  const m = app.media;
  const src = app.source;
  $('#preview-box').dataset.source = src;
  /** @type {HTMLButtonElement} */ ($('#go-live')).disabled = true;
  try {
    if (src !== 'test' && app.pattern) {
      app.pattern.stop();
      app.pattern = null;
    }
    if (src === 'mic' || src === 'test') {
      m.stopScreen(false);
      if (m.camera) {
        m.camera.stop();
        m.camera = null;
      }
      if (!m.mic) await m.start({ audio: true, video: false });
      m.rebuildOutput();
      if (src === 'test' && !app.pattern) app.pattern = testPattern(m.settings.res === '360' ? 640 : 1280);
    } else {
      if (!m.mic || ((src === 'camera' || src === 'pip') && !m.camera)) await m.start({ audio: true, video: src !== 'screen' || !!m.camera });
      if (src === 'camera') m.stopScreen(true);
      else await m.startScreen(src === 'pip');
    }
    setState(app.state === 'error' ? 'off' : app.state, app.state === 'error' ? '' : $('#status').textContent);
  } catch (e) {
    if (e && e.name === 'NotAllowedError' && src !== 'camera' && src !== 'mic') {
      toast('Screen sharing was cancelled', 'error');
    } else {
      const d = describeMediaError(e);
      setState(app.live ? app.state : 'error', d.text);
    }
  }
  showPreview();
  /** @type {HTMLButtonElement} */ ($('#go-live')).disabled = !tracks().length;
  await resync();
}

let syncing = Promise.resolve();
/** Serializes syncSession calls (sources change in bursts). */
function resync() {
  syncing = syncing.then(() => (app.session ? syncSession() : undefined)).catch((e) => console.warn('sync', e));
  return syncing;
}

/** The video track to send (null: microphone only). */
function videoTrack() {
  if (app.source === 'test') return app.pattern ? app.pattern.track : null;
  return app.source !== 'mic' ? app.media.output : null;
}

function tracks() {
  const m = app.media;
  const out = [];
  if (m.mic) out.push(m.mic);
  const v = videoTrack();
  if (v) out.push(v);
  return out;
}

/**
 * A test pattern: a moving colour, the time, and the sender's clock
 * (Date.now(), low 32 bits) as black/white blocks in the bottom three rows
 * of 16 (rows 1-2: bits 0-31, row 3: bits 0-15 inverted as a check), which
 * a viewer on the same machine can read back for glass-to-glass delay.
 * @param {number} width
 */
function testPattern(width) {
  const cv = document.createElement('canvas');
  cv.width = width;
  cv.height = Math.round((width * 9) / 16);
  const ctx = /** @type {CanvasRenderingContext2D} */ (cv.getContext('2d'));
  const track = cv.captureStream(30).getVideoTracks()[0];
  const W = cv.width, H = cv.height, B = W / 16;
  const draw = () => {
    const now = Date.now();
    ctx.fillStyle = `hsl(${Math.floor(now / 25) % 360} 55% 38%)`;
    ctx.fillRect(0, 0, W, H);
    ctx.fillStyle = '#fff';
    ctx.font = `600 ${Math.round(H / 7)}px system-ui, sans-serif`;
    ctx.textAlign = 'center';
    const d = new Date(now);
    ctx.fillText(`${d.toLocaleTimeString([], { hour12: false })}.${String(d.getMilliseconds()).padStart(3, '0')}`, W / 2, H * 0.36);
    ctx.font = `${Math.round(H / 18)}px system-ui, sans-serif`;
    ctx.fillText(`Parley test pattern · ${app.stream}`, W / 2, H * 0.5);
    const v = now >>> 0;
    for (let i = 0; i < 48; i++) {
      const bit = i < 32 ? (v >>> i) & 1 : ((v >>> (i - 32)) & 1) ^ 1;
      ctx.fillStyle = bit ? '#fff' : '#000';
      ctx.fillRect((i % 16) * B, H - 3 * B + Math.floor(i / 16) * B, B, B);
    }
  };
  draw();
  const timer = setInterval(draw, 1000 / 30);
  return { track, stop: () => { clearInterval(timer); track.stop(); } };
}

function showPreview() {
  const v = /** @type {HTMLVideoElement} */ ($('#preview'));
  const video = videoTrack();
  v.srcObject = video ? new MediaStream([video]) : null;
  v.hidden = !video;
  $('#audio-only').hidden = !!video;
  $('#preview-box').classList.toggle('mirror', app.source === 'camera');
  // Whether the preview shows a shared screen (a page hook, like the call page's tiles).
  $('#preview-box').dataset.sharing = String(app.media.sharing);
}

/** Keeps a live session's tracks in line with the source (replaceTrack, or a new session when the kinds change). */
async function syncSession() {
  const s = app.session;
  if (!s) return;
  const want = tracks();
  const kinds = want.map((t) => t.kind).sort().join();
  const have = ['audio', 'video'].filter((k) => s[k]).join();
  if (kinds !== have) {
    await stop(true);
    await goLive();
    return;
  }
  for (const t of want) if (s[t.kind].track !== t) await s[t.kind].replaceTrack(t);
}

async function goLive() {
  const list = tracks();
  if (!list.length) return;
  setState('starting', 'Connecting to the server…');
  try {
    // H.264 unless the server says nothing needs it (HLS off, no RTMP readers, no MP4 recording).
    const h264 = await serverInfo().then((i) => i.prefer_h264 !== false, () => true);
    const s = await publishMedia(`/whip/${encodeURIComponent(app.stream)}`, list, { token: app.token, h264 });
    app.session = s;
    s.pc.addEventListener('connectionstatechange', () => onPCState(s));
    onPCState(s);
  } catch (e) {
    app.session = null;
    if (e.status === 409) setState('error', 'Someone else is already publishing this stream (only one publisher at a time). Try again when they stop, or pick another stream name.');
    else if (e.status === 401 || e.status === 403) {
      setState('error', `The server wants a publish token for this stream: ${e.message}. Add ?token=… to this page's address.`);
      sessionStorage.removeItem('parley.token.b.' + app.stream);
    } else setState('error', `Could not start the broadcast: ${e.message}`);
    return;
  }
  if (app.token) sessionStorage.setItem('parley.token.b.' + app.stream, app.token);
  $('#token-hint').textContent = app.token ? 'This page publishes with the token above; OBS can use the same one.' : 'This server did not ask this page for a token: OBS can leave the token empty.';
}

/** @param {any} s */
function onPCState(s) {
  if (s !== app.session) return;
  const st = s.pc.connectionState;
  if (st === 'connected') {
    app.live = true;
    setState('live', '');
  } else if (st === 'failed' || st === 'closed') {
    // The server restarted or the network broke: publish again.
    app.live = false;
    s.close();
    app.session = null;
    setState('reconnecting', 'Lost the connection to the server; retrying…');
    setTimeout(() => {
      if (app.state === 'reconnecting') goLive();
    }, 2000);
  } else if (app.live && st === 'disconnected') {
    setState('reconnecting', 'Connection interrupted…');
  }
}

/** @param {boolean} [restarting] */
async function stop(restarting) {
  const s = app.session;
  app.session = null;
  app.live = false;
  if (s) s.close();
  if (!restarting) setState('off', 'The broadcast has ended. Viewers see “stream ended”.');
}

/** Shows the viewer count the server pushes. @param {{viewers?: number}} j */
function onStatus(j) {
  app.viewers = j.viewers || 0;
  const v = $('#viewers');
  v.dataset.count = String(app.viewers);
  v.replaceChildren(h('span', { class: 'ico', html: icons.users }), `${app.viewers} ${app.viewers === 1 ? 'viewer' : 'viewers'}`);
}

async function sendStats() {
  const s = app.session;
  const out = $('#send-stats');
  if (!s || app.state !== 'live') {
    out.textContent = '';
    return;
  }
  const r = await s.pc.getStats();
  let bytes = 0, w = 0, hh = 0, layers = 0;
  r.forEach((x) => {
    if (x.type !== 'outbound-rtp') return;
    bytes += x.bytesSent || 0;
    if (x.kind === 'video') {
      if ((x.framesPerSecond || 0) > 0) layers++;
      if ((x.frameWidth || 0) > w) {
        w = x.frameWidth;
        hh = x.frameHeight;
      }
    }
  });
  const now = performance.now();
  const p = app.sent;
  if (p.at) p.kbps = Math.max(0, ((bytes - p.bytes) * 8) / (now - p.at));
  Object.assign(p, { bytes, at: now, width: w, height: hh, layers });
  out.textContent = `Sending ${p.kbps >= 1000 ? (p.kbps / 1000).toFixed(1) + ' Mbit/s' : Math.round(p.kbps) + ' kbit/s'}` +
    (w ? ` · ${w}×${hh} · ${layers} simulcast layer${layers === 1 ? '' : 's'}` : ' · audio only');
}

function copy(text, what) {
  (navigator.clipboard ? navigator.clipboard.writeText(text) : Promise.reject())
    .then(() => toast(`${what} copied`, 'ok'), () => toast(text));
}

function micMeter() {
  // A ring that grows with the microphone level (mic-only preview).
  /** @type {AudioContext|null} */
  let ctx = null;
  let an = null, src = null, cur = null;
  const buf = new Float32Array(1024);
  setInterval(() => {
    const m = app.media;
    if ($('#audio-only').hidden || !m.mic) return;
    if (cur !== m.mic) {
      cur = m.mic;
      ctx = ctx || new AudioContext();
      if (src) src.disconnect();
      an = ctx.createAnalyser();
      src = ctx.createMediaStreamSource(new MediaStream([m.mic]));
      src.connect(an);
    }
    an.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const x of buf) sum += x * x;
    const level = Math.min(1, Math.sqrt(sum / buf.length) * 6);
    $('#mic-level').style.setProperty('--level', level.toFixed(2));
  }, 100);
}

function main() {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(app.stream)) {
    document.querySelector('main').replaceChildren(h('div', { class: 'card notice error', role: 'alert' },
      h('h1', { text: 'That is not a stream name' }), h('p', { text: 'Stream names are 1–64 letters, digits, dots, dashes or underscores, e.g. /b/my-show.' })));
    return;
  }
  document.title = `${app.stream} · Broadcast · Parley`;
  $('#stream-name').textContent = app.stream;
  const origin = location.origin;
  const viewerLink = `${origin}/w/${encodeURIComponent(app.stream)}`;
  const whipURL = `${origin}/whip/${encodeURIComponent(app.stream)}`;
  /** @type {HTMLInputElement} */ ($('#viewer-link')).value = viewerLink;
  /** @type {HTMLInputElement} */ ($('#whip-url')).value = whipURL;
  /** @type {HTMLInputElement} */ ($('#whip-token')).value = app.token || '(none)';
  $('#token-hint').textContent = app.token
    ? 'OBS and GStreamer use this token as the WHIP Bearer token.'
    : 'No token on this page. If the server requires one, open this page with ?token=… (parley token --room ' + app.stream + ' --grants publish).';
  $('#gst-cmd').textContent = `gst-launch-1.0 videotestsrc is-live=true ! videoconvert ! vp8enc deadline=1 ! rtpvp8pay ! \\\n  whipclientsink signaller::whip-endpoint=${whipURL}` +
    (app.token ? ` signaller::auth-token=${app.token}` : '');
  $('#copy-viewer-link').addEventListener('click', () => copy(viewerLink, 'Viewer link'));
  $('#copy-whip-url').addEventListener('click', () => copy(whipURL, 'WHIP URL'));
  $('#copy-whip-token').addEventListener('click', () => copy(app.token, 'Token'));
  // Every way in and out of the stream, on demand (a module of its own).
  import('./ingest-urls.js').then((m) => m.showIngestURLs(app.stream)).catch((e) => {
    $('#ingest-copied').textContent = `Could not list the stream URLs: ${e.message}`;
  });
  $('#go-live').addEventListener('click', () => goLive());
  $('#stop').addEventListener('click', () => stop());
  import('./record-server.js').then((m) => { // hosts with an admin token record on the server
    const btn = m.recordButton(app.stream, app.token, (text) => toast(text));
    if (btn) $('#stop').after(btn);
  }).catch(() => {});
  for (const r of document.querySelectorAll('input[name=src]')) {
    r.addEventListener('change', (e) => {
      app.source = /** @type {any} */ (e.target).value;
      openSource();
    });
  }
  app.media.addEventListener('output', () => {
    showPreview();
    resync();
  });
  app.media.addEventListener('mic', () => resync());
  app.media.addEventListener('screen-ended', () => {
    if (app.source === 'screen' || app.source === 'pip') {
      /** @type {HTMLInputElement} */ ($('#src-camera')).checked = true;
      app.source = 'camera';
      openSource();
    }
  });
  const initial = q.get('source');
  if (initial && ['camera', 'screen', 'pip', 'mic', 'test'].includes(initial)) {
    app.source = /** @type {any} */ (initial);
    /** @type {HTMLInputElement} */ ($(`#src-${initial}`)).checked = true;
  }
  setState('off', '');

  // Chat with viewers.
  const enabled = /** @type {HTMLInputElement} */ ($('#chat-enabled'));
  if (chatRoom(app.stream)) {
    const chat = new BroadcastChat(app.stream, { name: q.get('name') || store.get('name') || 'Host', publisher: true, token: app.token });
    app.chat = chat;
    enabled.checked = q.get('chat') === '1';
    chat.on = enabled.checked;
    $('#chat-slot').replaceChildren(chatBox(chat, h));
    // The server, not this page, says who hosts the chat (see broadcast-chat.js).
    chat.addEventListener('error', (e) => {
      const d = /** @type {CustomEvent} */ (e).detail;
      if (d.code === 'not-host') toast(d.message, 'error');
    });
    enabled.addEventListener('change', () => chat.setEnabled(enabled.checked));
    chat.connect();
  } else {
    enabled.disabled = true;
    $('#chat-slot').replaceChildren(h('p', { class: 'hint', text: 'Chat needs a stream name of at most 59 characters.' }));
  }

  openSource().then(() => {
    if (q.get('autostart') === '1') goLive();
  });
  watchStreamStatus(app.stream, app.token, onStatus);
  setInterval(() => sendStats().catch(() => {}), 1000);
  micMeter();
  window.addEventListener('pagehide', () => {
    if (app.session) app.session.close();
    if (app.chat) app.chat.close();
  });
}

main();
