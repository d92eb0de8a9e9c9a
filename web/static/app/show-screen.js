// @ts-check
// Light-show screen: joins the show's control channel, plays the show's
// audio over WHEP, analyses it and paints the whole screen with the level
// of its assigned frequency band, once per display frame.
import { showName, params, token, fmtBand, paint, rgbCSS, hexRGB, checkName } from './show-common.js';
import { play } from '../lib/whip.js';
import { ControlSocket } from '../lib/show.js';

// Band level: the power of the FFT bins in the band, in dB, mapped from
// MIN_DB..MAX_DB to 0..255 (times the show's gain).
const MIN_DB = -80;
const MAX_DB = -25;
const RELEASE_PER_S = 700; // how fast the level falls (attack is instant)
// Calm mode (photosensitivity): the painted colour follows the show through
// a low-pass filter of this time constant, so a change repeated 3 times a
// second or faster keeps within about 5 % of its full swing (WCAG 2.3.1's
// three-flashes threshold counts changes of 10 % or more).
const CALM_TAU_S = 1;
const CALM_KEY = 'parley-show-calm';
const KEY_NAME = 'parley-show-key:';

const $ = (s) => document.querySelector(s);
const name = showName();
if (!checkName(name)) await new Promise(() => {}); // stop here, the message is shown
const canvas = $('#paint');
const g2d = canvas.getContext('2d', { willReadFrequently: true });
const audioEl = $('#audio');

const state = {
  show: name, id: '', key: sessionStorage.getItem(KEY_NAME + name) || '', label: params.get('label') || '',
  band: null, index: 0, count: 1, mode: { palette: 'redblue', color: '#ffffff', gain: 1 }, text: '',
  level: 0, raw: 0, color: [255, 0, 0], ws: 'connecting', audio: 'waiting', stream: '', iceServers: [],
  texts: 0, sound: false, epoch: '',
  /** the server tells whether the show's audio is on air (hello's audio_live, then "air") */
  airKnown: false, airLive: false,
  // Nothing is painted until the person has read the warning and started.
  started: false,
  calm: localStorage.getItem(CALM_KEY) ? localStorage.getItem(CALM_KEY) === '1' : matchMedia('(prefers-reduced-motion: reduce)').matches,
};
// The page's library object, for debugging and the browser tests: the WHEP
// session of the show's audio (whip.js Session), nothing of the page's
// state. What the screen shows is on the page (the canvas, #status,
// #band's data-band, body's data-audio, data-control, data-palette), and
// its onsets and flashes are User Timing marks ("parley:show-onset",
// "parley:show-flash": performance.getEntriesByName).
/** @type {any} */ (window).parleyApp = Object.freeze({ get session() { return session; } });

const ac = new AudioContext({ latencyHint: 'interactive' });
const analyser = ac.createAnalyser();
analyser.fftSize = 2048;
analyser.smoothingTimeConstant = 0.2;
const freq = new Float32Array(analyser.frequencyBinCount);
let source = null;

// ---- control channel ----
const socket = new ControlSocket(name, () => {
  const q = new URLSearchParams({ role: 'screen' });
  if (state.key) q.set('key', state.key);
  if (state.label) q.set('label', state.label);
  if (token) q.set('token', token);
  return q.toString();
}, { onMessage, onState });

function onState(s, ev) {
  state.ws = s;
  if (s === 'closed' && ev && ev.code === 4001) {
    // Our key was taken over (e.g. this tab was duplicated): start afresh.
    state.key = '';
    sessionStorage.removeItem(KEY_NAME + name);
  }
  renderStatus();
}

let flash = null; // {rgb, start, ms}
let infoTimer = 0;

function onMessage(m) {
  switch (m.type) {
    case 'hello':
      state.id = m.id;
      state.key = m.key;
      sessionStorage.setItem(KEY_NAME + name, m.key);
      state.stream = m.stream;
      state.iceServers = m.iceServers || [];
      // A new epoch means the server restarted: our media session is gone.
      if (state.epoch && m.epoch !== state.epoch && session) restartAudio('server restarted');
      state.epoch = m.epoch;
      // The server says whether the show is on air (and "air" when that
      // changes): a waiting screen asks for the audio once it is there.
      state.airKnown = typeof m.audio_live === 'boolean';
      state.airLive = !!m.audio_live;
      if (!state.airKnown || m.audio_live) startAudio();
      else {
        state.audio = 'waiting';
        renderStatus();
      }
      break;
    case 'air':
      state.airLive = !!m.live;
      if (m.live) startAudio();
      break;
    case 'assign':
      state.band = m.band;
      state.index = m.index || 0;
      state.count = m.count || 1;
      if (m.label) state.label = m.label;
      showInfo();
      break;
    case 'mode':
      state.mode = { palette: m.palette || 'redblue', color: m.color || '#ffffff', gain: m.gain || 1 };
      document.body.dataset.palette = state.mode.palette;
      break;
    case 'flash':
      flash = { rgb: hexRGB(m.color), start: performance.now(), ms: m.ms || 300 };
      performance.mark('parley:show-flash', { startTime: flash.start });
      break;
    case 'text':
      state.text = m.text || '';
      state.texts++;
      renderText();
      break;
    case 'error':
      console.warn('show:', m.code, m.message);
      break;
  }
}

// ---- audio over WHEP ----
let session = null;
let starting = false;
let retryTimer = 0;

async function startAudio() {
  if (starting || !state.stream || (session && !session.closed)) return;
  starting = true;
  clearTimeout(retryTimer);
  try {
    const s = await play('/api/show-media/whep/' + encodeURIComponent(state.stream), {
      token, iceServers: state.iceServers, onTrack: attach,
    });
    session = s;
    state.audio = 'connecting';
    watch(s);
  } catch (e) {
    state.audio = e.code === 'not_live' ? 'waiting' : 'error';
    if (state.audio === 'error') console.warn('show: audio:', e.message);
    // Not on air yet: the "air" message starts it. Ask again in a second
    // only if the server says it is on air (it went live while we asked)
    // or says nothing (an older server).
    if (e.code !== 'not_live') retryTimer = setTimeout(startAudio, 3000);
    else if (!state.airKnown || state.airLive) retryTimer = setTimeout(startAudio, 1000);
  } finally {
    starting = false;
    renderStatus();
  }
}

function restartAudio(why) {
  if (session) {
    console.info('show: restarting audio:', why);
    session.close();
    session = null;
  }
  state.audio = 'waiting';
  renderStatus();
  clearTimeout(retryTimer);
  retryTimer = setTimeout(startAudio, 500);
}

// watch restarts the session when it fails or stops carrying audio.
function watch(s) {
  const pc = s.pc;
  let lastBytes = -1, stalled = 0;
  let lost = 0;
  pc.addEventListener('connectionstatechange', () => {
    if (s !== session) return;
    clearTimeout(lost);
    if (pc.connectionState === 'connected') state.audio = 'live';
    if (pc.connectionState === 'failed' || pc.connectionState === 'closed') restartAudio(pc.connectionState);
    if (pc.connectionState === 'disconnected') lost = setTimeout(() => { if (s === session) restartAudio('disconnected'); }, 4000);
    renderStatus();
  });
  const tick = async () => {
    if (s !== session || s.closed) return;
    let bytes = 0;
    try {
      (await pc.getStats()).forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'audio') bytes += r.bytesReceived || 0; });
    } catch { /* closed */ }
    stalled = bytes === lastBytes ? stalled + 1 : 0;
    lastBytes = bytes;
    if (stalled >= 3) { restartAudio('no audio for 6 s'); return; }
    setTimeout(tick, 2000);
  };
  setTimeout(tick, 2000);
}

function attach(stream) {
  // Remote WebRTC audio reaches WebAudio only while it plays in a media
  // element; a muted one will do.
  audioEl.srcObject = stream;
  audioEl.muted = !state.sound;
  audioEl.play().catch(() => needStart());
  if (source) source.disconnect();
  source = ac.createMediaStreamSource(stream);
  source.connect(analyser);
  if (ac.state !== 'running') ac.resume().catch(() => needStart());
}

// ---- painting ----
function bandLevel() {
  if (!state.band || !source) return 0;
  analyser.getFloatFrequencyData(freq);
  const binHz = ac.sampleRate / analyser.fftSize;
  let kLo = Math.max(1, Math.ceil(state.band[0] / binHz));
  let kHi = Math.min(freq.length - 1, Math.ceil(state.band[1] / binHz) - 1);
  if (kHi < kLo) kLo = kHi = Math.min(freq.length - 1, Math.max(1, Math.round(Math.sqrt(state.band[0] * state.band[1]) / binHz)));
  let sum = 0;
  for (let k = kLo; k <= kHi; k++) sum += Math.pow(10, freq[k] / 10);
  if (!(sum > 0)) return 0;
  const db = 10 * Math.log10(sum) + 20 * Math.log10(state.mode.gain || 1);
  return Math.max(0, Math.min(255, ((db - MIN_DB) / (MAX_DB - MIN_DB)) * 255));
}

let last = performance.now();
let avg = 0, beat = 0, lastBeat = 0, above = false, lastSent = -1, lastSentAt = 0;

function frame(now) {
  const dt = Math.min(0.1, (now - last) / 1000);
  last = now;
  const raw = bandLevel();
  state.raw = raw;
  state.level = raw >= state.level ? raw : Math.max(raw, state.level - RELEASE_PER_S * dt);
  // Beats: the level jumps well above its recent average.
  avg += (raw - avg) * Math.min(1, dt * 3);
  if (raw > avg + 35 && raw > 70 && now - lastBeat > 180) { beat = 1; lastBeat = now; }
  beat = Math.max(0, beat - dt * 4);
  let rgb = paint(state.level, { ...state.mode, index: state.index, count: state.count, beat });
  if (flash) {
    const t = (now - flash.start) / flash.ms;
    if (t >= 1) flash = null;
    else {
      const a = t < 0.6 ? 1 : 1 - (t - 0.6) / 0.4;
      rgb = rgb.map((c, i) => Math.round(c * (1 - a) + flash.rgb[i] * a));
    }
  }
  if (!state.started) rgb = [0, 0, 0];
  else if (state.calm) {
    const k = 1 - Math.exp(-dt / CALM_TAU_S);
    rgb = rgb.map((c, i) => Math.round(state.color[i] + (c - state.color[i]) * k));
  }
  state.color = rgb;
  g2d.fillStyle = rgbCSS(rgb);
  g2d.fillRect(0, 0, canvas.width, canvas.height);
  // Onsets (for latency measurements): crossing up through 160.
  if (!above && state.level >= 160) {
    above = true;
    // A long show: keep the timeline small (tests and benchmarks read a few).
    if (performance.getEntriesByName('parley:show-onset').length >= 1000) performance.clearMarks('parley:show-onset');
    performance.mark('parley:show-onset', { startTime: now });
  } else if (above && state.level < 64) above = false;
  // Report the level to the hosts, at most 10 times a second.
  const lv = Math.round(state.level);
  if (now - lastSentAt >= 100 && lv !== lastSent && socket.send({ type: 'level', value: lv })) {
    lastSent = lv;
    lastSentAt = now;
  }
  requestAnimationFrame(frame);
}
requestAnimationFrame(frame);

// ---- chrome around the colour ----
function renderStatus() {
  const st = $('#status');
  let text = 'Connecting…', s = 'connecting';
  if (state.ws === 'open') {
    if (state.audio === 'live') { text = 'Live'; s = 'joined'; }
    else if (state.audio === 'waiting') text = 'Waiting for the host to play';
    else if (state.audio === 'error') { text = 'Audio trouble, retrying…'; s = 'reconnecting'; }
    else text = 'Connecting audio…';
  } else if (state.ws === 'closed') { text = 'Reconnecting…'; s = 'reconnecting'; }
  st.textContent = text;
  st.dataset.state = s;
  document.body.dataset.audio = state.audio;
  document.body.dataset.control = state.ws;
}

function showInfo() {
  $('#label').textContent = state.label || 'Screen';
  $('#band').textContent = fmtBand(state.band) + (state.count > 1 ? ` · ${state.index + 1} of ${state.count}` : '');
  $('#band').dataset.band = state.band ? state.band.join('-') : '';
  document.body.classList.add('show-info');
  clearTimeout(infoTimer);
  infoTimer = setTimeout(() => document.body.classList.remove('show-info'), 5000);
}

function renderText() {
  const t = $('#text');
  t.textContent = state.text;
  t.hidden = !state.text;
}

function needStart() {
  $('#start').hidden = false;
}

async function start() {
  state.started = true;
  // The button goes away with the card: the focus goes to the page's heading.
  if ($('#start').contains(document.activeElement)) $('#title').focus();
  $('#start').hidden = true;
  try { await ac.resume(); } catch { /* try again on the next tap */ }
  audioEl.play().catch(() => {});
  await fullScreen();
  wakeLock();
}

async function fullScreen() {
  const d = document.documentElement;
  if (!document.fullscreenElement && d.requestFullscreen) {
    try { await d.requestFullscreen({ navigationUI: 'hide' }); } catch { /* not allowed here */ }
  }
}

let lock = null;
async function wakeLock() {
  if (!('wakeLock' in navigator) || lock) return;
  try {
    lock = await navigator.wakeLock.request('screen');
    lock.addEventListener('release', () => { lock = null; });
  } catch { /* not granted; the screen may sleep */ }
}

document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible') wakeLock();
});
$('#btn-start').addEventListener('click', start);
/** @param {boolean} on */
function setCalm(on) {
  state.calm = on;
  localStorage.setItem(CALM_KEY, on ? '1' : '0');
  $('#calm').checked = on;
  $('#btn-calm').setAttribute('aria-pressed', String(on));
}
$('#calm').checked = state.calm;
$('#btn-calm').setAttribute('aria-pressed', String(state.calm));
$('#calm').addEventListener('change', () => setCalm($('#calm').checked));
$('#btn-calm').addEventListener('click', () => setCalm(!state.calm));
$('#btn-full').addEventListener('click', () => { fullScreen(); wakeLock(); });
$('#btn-sound').addEventListener('click', () => {
  state.sound = !state.sound;
  audioEl.muted = !state.sound;
  if (state.sound) { audioEl.play().catch(() => {}); ac.resume().catch(() => {}); }
  const b = $('#btn-sound');
  b.textContent = state.sound ? 'Sound on' : 'Sound off';
  b.setAttribute('aria-pressed', String(state.sound));
});
// Moving the pointer or tapping shows the label and tools for a while.
let toolsTimer = 0;
const poke = () => {
  document.body.classList.add('show-tools');
  clearTimeout(toolsTimer);
  toolsTimer = setTimeout(() => document.body.classList.remove('show-tools'), 3000);
  showInfo();
};
document.addEventListener('pointermove', poke);
document.addEventListener('pointerdown', poke);
window.addEventListener('pagehide', () => { if (session) session.close(); });

$('#btn-start').focus();
wakeLock();
showInfo();
renderStatus();
