// @ts-check
// Viewer page (/w/<stream>): plays a broadcast over WHEP, whatever publishes
// it (the /b/ page, OBS, GStreamer, parley bench). Waits while the stream is
// not live and starts by itself when it goes live; says "stream ended" when
// it stops (and starts again if it comes back). Plays LL-HLS instead (hls.js,
// loaded then) with ?hls, when WebRTC cannot connect, or when the server
// refuses another WebRTC viewer (--max-webrtc-viewers); a badge says which.
import { h, $, icons, store } from './ui.js';
import { playMedia, VIEWER_LIMIT } from '../lib/whip.js';
import { playHLS, hlsURL } from '../lib/hls.js';
import { BroadcastChat, chatRoom } from '../lib/chat.js';
import { chatBox } from './broadcast-chat.js';
import { watchStreamStatus } from '../lib/stream-status.js';

const stream = decodeURIComponent(location.pathname.replace(/^\/w\/?/, '').replace(/\/+$/, ''));
const q = new URLSearchParams(location.search);

const ICON = {
  vol: '<svg viewBox="0 0 24 24" aria-hidden="true" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round"><path d="M4 9h4l5-4v14l-5-4H4z"/><path d="M16 9a4 4 0 0 1 0 6M19 6a8 8 0 0 1 0 12"/></svg>',
  muted: '<svg viewBox="0 0 24 24" aria-hidden="true" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round"><path d="M4 9h4l5-4v14l-5-4H4z"/><path d="M17 9l5 6M22 9l-5 6"/></svg>',
  full: '<svg viewBox="0 0 24 24" aria-hidden="true" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round"><path d="M4 9V4h5M20 9V4h-5M4 15v5h5M20 15v5h-5"/></svg>',
};

const app = {
  stream,
  token: q.get('token') || sessionStorage.getItem('parley.token.w.' + stream) || '',
  /** 'waiting' | 'connecting' | 'live' | 'ended' | 'error' */
  state: 'waiting',
  /** @type {any} whip.js Session */
  session: null,
  /** @type {MediaStream|null} */
  media: null,
  wasLive: false,
  /** published tracks in the last status, and when the session started (WHEP cannot renegotiate: a change means a new session) */
  lastTracks: 0,
  sessionTracks: 0,
  needsClick: false,
  /** the page muted the video because the browser would not play sound by itself */
  autoMuted: false,
  /** a WHEP request is starting an on-demand camera */
  demanding: false,
  stats: { bytes: 0, at: 0, kbps: 0, latencyMs: 0, rttMs: 0, jitterMs: 0, width: 0, height: 0, fps: 0, framesDecoded: 0 },
  /** @type {BroadcastChat|null} */
  chat: null,
  /** how the page plays: 'webrtc', or 'hls' (asked for, or WebRTC could not) */
  path: q.has('hls') ? 'hls' : 'webrtc',
  /** why it plays HLS, in words ('' for WebRTC) */
  pathReason: q.has('hls') ? 'asked for with ?hls' : '',
  /** @type {{kind: string, latency: () => number, close: () => void, hls?: any}|null} the HLS playback */
  hls: null,
  /** an HLS playback is being set up */
  hlsStarting: false,
  /** @type {any} the last status the server pushed (GET /api/streams/<s>/events) */
  status: null,
  /** status events received (tests read it) */
  statusEvents: 0,
};
// The page's library objects, for debugging and the browser tests: the WHEP
// session (whip.js Session) and the HLS playback (hls.js playHLS), and
// nothing of the page's state.
/** @type {any} */ (window).parleyApp = Object.freeze({ get session() { return app.session; }, get hls() { return app.hls; } });

const video = /** @type {HTMLVideoElement} */ (document.getElementById('video'));

/** @param {string} s @param {string} [title] @param {string} [text] */
function setState(s, title, text) {
  app.state = s;
  document.body.dataset.state = s;
  $('#player').dataset.state = s;
  const air = $('#air');
  air.dataset.state = s;
  air.textContent = { waiting: 'Not live', connecting: 'Connecting…', live: 'Live', ended: 'Stream ended', error: 'Error' }[s] || s;
  const overlay = $('#overlay');
  overlay.hidden = s === 'live';
  overlay.dataset.kind = s;
  $('#overlay-spin').hidden = s === 'ended' || s === 'error';
  $('#overlay-title').textContent = title || '';
  $('#overlay-text').textContent = text || '';
  if (s !== 'live') bigButton('');
}

function waiting() {
  setState('waiting', 'This stream is not live yet', `It starts playing here by itself when ${app.stream} goes live.`);
}

/** Says since when and why the camera cannot be reached (the overlay is an aria-live status). @param {{since: string, error?: string}} cam */
function cameraOffline(cam) {
  const since = new Date(cam.since);
  const at = isNaN(since.getTime()) ? '' : ` since ${since.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}`;
  const title = `Camera offline${at} — ${cam.error || 'unreachable'}`;
  const text = 'It plays here by itself when the camera is back.';
  // Unchanged text is not set again, so screen readers announce it once.
  if (app.state === 'waiting' && $('#overlay-title').textContent === title) return;
  setState('waiting', title, text);
}

function ended() {
  setState('ended', 'Stream ended', 'Thanks for watching. If the stream comes back, it starts here again by itself.');
}

/** Asks for an on-demand camera: plays it, or keeps saying it is offline without flickering. @param {{state: string}} cam */
async function demand(cam) {
  app.demanding = true;
  try {
    await connect(cam.state === 'error');
  } finally {
    app.demanding = false;
  }
  // Still offline: ask again a little later (the server's backoff paces
  // the camera), with the latest status.
  if (!app.session && !app.hls) setTimeout(() => { if (app.status) onStatus(app.status); }, 5000);
}

/** @param {boolean} [quiet] keep the current message while connecting */
async function connect(quiet) {
  if (app.session || app.hls || app.state === 'connecting') return;
  if (app.path === 'hls') return connectHLS();
  if (!quiet) setState('connecting', 'Connecting to the stream…', '');
  app.sessionTracks = app.lastTracks;
  let s;
  try {
    s = await playMedia(`/whep/${encodeURIComponent(app.stream)}`, {
      token: app.token,
      onTrack: (ms) => attach(ms),
    });
  } catch (e) {
    if (e.status === 404) {
      // Not live (any more): wait for it.
      if (quiet) return;
      if (app.wasLive) ended();
      else waiting();
    } else if (e.status === 401 || e.status === 403) {
      setState('error', e.status === 401 ? 'This stream needs an access token' : 'This access token does not let you watch this stream',
        'Open the viewer link with ?token=… that the publisher gave you.');
    } else if (e.code === VIEWER_LIMIT) {
      useHLS('the stream has all the WebRTC viewers the server takes');
    } else if (e.status === 406) {
      // The stream's codec is one this browser does not decode over WebRTC
      // (e.g. H.265 from an encoder): HLS may carry it to the browser's player.
      useHLS(`WebRTC cannot play it here (${e.message})`);
    } else {
      // The WHEP request itself failed (a proxy, a network that blocks it).
      useHLS(`WebRTC could not connect (${e.message})`);
    }
    return;
  }
  if (app.token) sessionStorage.setItem('parley.token.w.' + app.stream, app.token);
  app.session = s;
  let connected = false;
  // ICE that never connects (UDP blocked, no TURN) fails after a while; do
  // not wait for the browser's own verdict longer than this.
  const give = setTimeout(() => {
    if (app.session === s && !connected) useHLS('WebRTC could not connect (no ICE connectivity)');
  }, 12000);
  s.pc.addEventListener('connectionstatechange', () => {
    if (app.session !== s) return;
    const st = s.pc.connectionState;
    if (st === 'connected') {
      connected = true;
      clearTimeout(give);
      live();
    } else if (st === 'failed' && !connected) {
      clearTimeout(give);
      useHLS('WebRTC could not connect (ICE failed)');
    } else if (st === 'failed' || st === 'closed') stopSession(true);
  });
}

/**
 * Plays over HLS from now on, saying why (WebRTC stays off for this page).
 * @param {string} reason
 */
function useHLS(reason) {
  stopSession();
  app.path = 'hls';
  app.pathReason = reason;
  $('#path-status').textContent = `Playing over HLS, a few seconds behind: ${reason}.`;
  showPath();
  app.state = 'waiting'; // let connect run
  connectHLS();
}

/** Starts the HLS playback of a live stream. */
async function connectHLS() {
  if (app.hls || app.hlsStarting) return;
  app.hlsStarting = true;
  if (app.state !== 'live') setState('connecting', 'Connecting to the stream over HLS…', '');
  /** @type {any} */
  let p = null;
  try {
    p = await playHLS(video, hlsURL(app.stream, app.token), {
      onError: (e) => {
        if (app.hls !== p) return;
        stopSession();
        if (e.status === 401 || e.status === 403) {
          setState('error', 'This access token does not let you watch this stream', 'Open the viewer link with ?token=… that the publisher gave you.');
        } else if (e.status === 404) {
          // Not live (any more), or HLS is off: the status events decide.
          if (app.wasLive) ended();
          else waiting();
        } else {
          setState('error', 'Could not play the stream over HLS', `${e.message}. Retrying…`);
        }
      },
    });
  } catch (e) {
    setState('error', 'This browser cannot play this stream', /** @type {Error} */ (e).message);
    return;
  } finally {
    app.hlsStarting = false;
  }
  if (app.token) sessionStorage.setItem('parley.token.w.' + app.stream, app.token);
  app.hls = p;
  showPath();
  video.addEventListener('loadeddata', () => {
    if (app.hls !== p) return;
    $('#audio-only').hidden = video.videoWidth > 0;
    live();
  }, { once: true });
}

/** The badge that says which way the stream plays. */
function showPath() {
  const b = $('#path');
  b.hidden = false;
  b.dataset.path = app.path;
  $('#path-name').textContent = app.path === 'hls' ? 'HLS' : 'WebRTC';
  b.title = app.path === 'hls'
    ? `Playing over HLS (${app.hls ? app.hls.kind : 'hls.js'}): ${app.pathReason}. HLS runs a few seconds behind WebRTC.`
    : 'Playing over WebRTC: the lowest delay.';
}

/** @param {number} s seconds */
function fmtLatency(s) {
  if (!(s >= 0) || !isFinite(s)) return '';
  return s < 1 ? `~${Math.round(s * 1000)} ms` : `~${s.toFixed(1)} s`;
}

/** @param {MediaStream} ms */
function attach(ms) {
  app.media = ms;
  if (video.srcObject !== ms) video.srcObject = ms;
  $('#audio-only').hidden = ms.getVideoTracks().length > 0;
  if (app.session && app.session.pc.connectionState === 'connected') live();
}

function live() {
  if (app.state === 'live') return;
  app.wasLive = true;
  setState('live');
  startPlayback();
}

/**
 * Plays with sound; if the browser blocks that, plays muted with a big
 * Unmute button (browsers let muted video play by itself); if it blocks
 * even that, a Play button does it.
 */
function startPlayback() {
  video.muted = store.get('watch.muted') === '1';
  video.volume = Number(/** @type {HTMLInputElement} */ ($('#volume')).value);
  const played = () => {
    app.needsClick = false;
    bigButton(app.autoMuted ? 'unmute' : '');
    updateMute();
  };
  video.play().then(played, () => {
    if (video.muted) return needClick();
    video.muted = true;
    app.autoMuted = true;
    video.play().then(played, needClick);
  });
  updateMute();
}

function needClick() {
  app.needsClick = true;
  bigButton('play');
}

/** The big button in the player: 'play', 'unmute' or none (''). @param {string} kind */
function bigButton(kind) {
  const b = $('#play');
  b.hidden = !kind;
  if (!kind) return;
  b.dataset.kind = kind;
  const label = kind === 'unmute' ? 'Unmute' : 'Play';
  b.setAttribute('aria-label', label);
  b.querySelector('svg').innerHTML = kind === 'unmute'
    ? '<path d="M4 9h4l5-4v14l-5-4H4z" fill="currentColor"/><path d="M16 9a4 4 0 0 1 0 6M19 6a8 8 0 0 1 0 12" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round"/>'
    : '<path d="M8 5v14l11-7z" fill="currentColor"/>';
  b.querySelector('span').textContent = label;
}

/** @param {boolean} [checkLive] */
function stopSession(checkLive) {
  const s = app.session;
  app.session = null;
  if (s) s.close();
  const p = app.hls;
  app.hls = null;
  if (p) p.close();
  video.srcObject = null;
  app.media = null;
  app.stats.at = 0;
  app.stats.kbps = 0;
  app.stats.latencyMs = 0;
  if (checkLive && app.status) onStatus(app.status);
}

/** What the page does with the stream's status (pushed by the server). @param {any} j */
function onStatus(j) {
  app.status = j;
  app.lastTracks = j.tracks || 0;
  showSourceNotes(j.source);
  // An IP camera Parley pulls: its state says why there is no picture.
  const cam = j.source && j.source.kind === 'camera' ? j.source : null;
  if (j.live) {
    if (app.session && !app.hls && app.sessionTracks && app.lastTracks !== app.sessionTracks) {
      // The publisher now sends other tracks (e.g. microphone only): play them.
      stopSession();
      setState('connecting', 'The stream changed; reconnecting…', '');
      app.state = 'waiting';
    }
    if (!app.session && !app.hls && app.state !== 'connecting') connect();
  } else if (cam && cam.on_demand && (cam.state === 'idle' || cam.state === 'error') && !app.session && !app.hls && !app.demanding && app.state !== 'connecting') {
    // Say why there is no picture first: the stream's end may have come as
    // its own event before the camera's error, and demand() keeps the
    // message it finds.
    if (cam.state === 'error') cameraOffline(cam);
    demand(cam); // a viewer starts an on-demand camera (after a failure, the server's backoff paces the retries)
  } else if (app.session || app.hls || app.state === 'live') {
    stopSession();
    if (cam && cam.state === 'error') cameraOffline(cam);
    else ended();
  } else if (cam && cam.state === 'error' && !app.demanding) {
    cameraOffline(cam);
  } else if (app.state === 'error') {
    if (app.wasLive) ended();
    else waiting();
  }
}

/**
 * What the server says viewers should know of the stream's source: video
 * no browser decodes, B-frames, no sound (e.g. ffmpeg missing for AAC).
 * @param {any} src
 */
function showSourceNotes(src) {
  const notes = src && src.state === 'live' ? [...(src.notes || [])] : [];
  if (src && src.state === 'live' && src.audio_error) notes.push(`No sound: ${src.audio_error}.`);
  const el = $('#source-note');
  const text = notes.map((n) => n.charAt(0).toUpperCase() + n.slice(1)).join(' ');
  if (el.textContent !== text) el.textContent = text;
  el.hidden = !text;
}

async function readStats() {
  const s = app.session;
  const out = $('#readout');
  if (app.hls && app.state === 'live') {
    const p = app.hls;
    const lat = p.latency();
    app.stats.latencyMs = lat >= 0 ? Math.round(lat * 1000) : 0;
    app.stats.width = video.videoWidth;
    app.stats.height = video.videoHeight;
    const bw = p.hls && p.hls.bandwidthEstimate > 0 ? ` · ${(p.hls.bandwidthEstimate / 1e6).toFixed(1)} Mbit/s link` : '';
    out.textContent = `${video.videoWidth ? `${video.videoWidth}×${video.videoHeight}` : 'audio'}${bw}`;
    out.title = `HLS (${p.kind}) ${fmtLatency(lat)} behind the live edge`;
    $('#path-latency').textContent = fmtLatency(lat);
    return;
  }
  if (!s || app.state !== 'live') {
    // Nothing plays: no numbers (they would be the last ones, frozen).
    const text = app.state === 'ended' ? 'Stream ended' : '';
    if (out.textContent !== text) out.textContent = text;
    out.title = '';
    $('#path-latency').textContent = '';
    return;
  }
  const r = await s.pc.getStats();
  const st = app.stats;
  let bytes = 0, jb = 0, jbn = 0, vpk = 0;
  r.forEach((x) => {
    if (x.type === 'inbound-rtp') {
      bytes += x.bytesReceived || 0;
      if (x.kind === 'video') {
        vpk += x.packetsReceived || 0;
        st.width = x.frameWidth || 0;
        st.height = x.frameHeight || 0;
        st.fps = x.framesPerSecond || 0;
        st.framesDecoded = x.framesDecoded || 0;
        jb = x.jitterBufferDelay || 0;
        jbn = x.jitterBufferEmittedCount || 0;
      }
    }
    if (x.type === 'candidate-pair' && x.nominated && x.state === 'succeeded' && x.currentRoundTripTime != null) st.rttMs = x.currentRoundTripTime * 1000;
  });
  const now = performance.now();
  if (st.at) st.kbps = Math.max(0, ((bytes - st.bytes) * 8) / (now - st.at));
  if (st.prevJb != null && jbn > st.prevJbn) st.jitterMs = ((jb - st.prevJb) / (jbn - st.prevJbn)) * 1000;
  st.prevJb = jb;
  st.prevJbn = jbn;
  // No video arriving for two seconds: an audio-only stream (a microphone,
  // or OBS without video), whatever the session negotiated.
  st.videoIdle = vpk === st.videoPackets ? (st.videoIdle || 0) + 1 : 0;
  st.videoPackets = vpk;
  $('#audio-only').hidden = st.videoIdle < 2;
  video.classList.toggle('idle', st.videoIdle >= 2);
  st.bytes = bytes;
  st.at = now;
  // Network (half the round trip) + jitter buffer: what this end adds to the publisher's own delay.
  st.latencyMs = Math.round(st.rttMs / 2 + st.jitterMs);
  const rate = st.kbps >= 1000 ? `${(st.kbps / 1000).toFixed(1)} Mbit/s` : `${Math.round(st.kbps)} kbit/s`;
  out.textContent = `${st.width ? `${st.width}×${st.height} · ` : ''}${rate}`;
  $('#path-latency').textContent = fmtLatency(st.latencyMs / 1000);
  out.title = `Round trip ${Math.round(st.rttMs)} ms, jitter buffer ${Math.round(st.jitterMs)} ms, ${Math.round(st.fps)} fps`;
}

/** Sound on, by the viewer's click. */
function unmute() {
  const vol = /** @type {HTMLInputElement} */ ($('#volume'));
  video.muted = false;
  app.autoMuted = false;
  if (video.volume === 0) video.volume = vol.valueAsNumber = 0.5;
  store.set('watch.muted', '0');
  if (video.paused && (app.media || app.hls)) startPlayback();
  else bigButton('');
  updateMute();
}

function updateMute() {
  const m = video.muted || video.volume === 0;
  const b = $('#mute');
  b.innerHTML = m ? ICON.muted : ICON.vol;
  b.setAttribute('aria-pressed', String(video.muted));
  b.setAttribute('aria-label', video.muted ? 'Unmute' : 'Mute');
  b.title = video.muted ? 'Unmute' : 'Mute';
}

function main() {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(app.stream)) {
    setState('error', 'That is not a stream name', 'Stream names are 1–64 letters, digits, dots, dashes or underscores.');
    return;
  }
  document.title = `${app.stream} · Parley`;
  $('#stream-name').textContent = app.stream;
  const vol = /** @type {HTMLInputElement} */ ($('#volume'));
  vol.value = store.get('watch.volume', '1');
  $('#mute').addEventListener('click', () => {
    if (video.muted) unmute();
    else {
      video.muted = true;
      store.set('watch.muted', '1');
      updateMute();
    }
  });
  vol.addEventListener('input', () => {
    video.volume = vol.valueAsNumber;
    if (video.volume > 0 && video.muted) {
      video.muted = false;
      app.autoMuted = false;
      if ($('#play').dataset.kind === 'unmute') bigButton('');
    }
    store.set('watch.volume', vol.value);
    updateMute();
  });
  const fs = $('#fullscreen');
  fs.innerHTML = ICON.full;
  fs.title = 'Fullscreen';
  fs.addEventListener('click', () => {
    const p = $('#player');
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
    else if (p.requestFullscreen) p.requestFullscreen().catch(() => {});
  });
  video.addEventListener('dblclick', () => fs.click());
  $('#play').addEventListener('click', () => {
    if ($('#play').dataset.kind === 'unmute') {
      unmute();
      return;
    }
    video.play().then(() => {
      app.needsClick = false;
      bigButton('');
    }, () => {});
  });
  updateMute();
  waiting();
  showPath();

  // Chat, when the publisher allows it.
  if (chatRoom(app.stream) && q.get('chat') !== '0') {
    const name = q.get('name') || store.get('name') || `Viewer ${Math.floor(Math.random() * 900 + 100)}`;
    const chat = new BroadcastChat(app.stream, { name, token: app.token });
    app.chat = chat;
    const nameInput = /** @type {HTMLInputElement} */ ($('#chat-name'));
    nameInput.value = name;
    nameInput.addEventListener('change', () => {
      const n = nameInput.value.trim().slice(0, 64);
      if (!n || n === chat.name) return;
      store.set('name', n);
      chat.rename(n);
    });
    $('#chat-slot').replaceChildren(chatBox(chat, h));
    chat.addEventListener('state', () => {
      $('#chat').hidden = !chat.on;
      document.body.classList.toggle('with-chat', chat.on);
    });
    chat.addEventListener('members', (e) => {
      const n = /** @type {CustomEvent} */ (e).detail;
      const c = $('#chat-members');
      c.replaceChildren(h('span', { class: 'ico', html: icons.users }), String(n));
      c.title = `${n} in the chat`;
    });
    chat.connect();
  }

  const stopStatus = watchStreamStatus(app.stream, app.token, (st) => {
    app.statusEvents++;
    onStatus(st);
  });
  setInterval(() => readStats().catch(() => {}), 1000);
  window.addEventListener('pagehide', () => {
    stopStatus();
    stopSession();
    if (app.chat) app.chat.close();
  });
}

main();
