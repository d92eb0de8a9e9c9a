// @ts-check
// Light-show host page: plays a file (or the microphone) through WebAudio
// into a MediaStreamAudioDestinationNode published over WHIP as the show's
// broadcast, and controls the screens (bands, palette, flash, text).
import { el, showName, token, fmtHz, fmtBand, paint, rgbCSS, PALETTES, MIN_FREQ, MAX_FREQ, checkName } from './show-common.js';
import { publish } from '../lib/whip.js';
import { ControlSocket } from '../lib/show.js';

const $ = (s) => document.querySelector(s);
const name = showName();
if (!checkName(name)) await new Promise(() => {}); // stop here, the message is shown
$('#show-name').textContent = name;
document.title = `${name} · Parley light show`;
const screenURL = `${location.origin}/show/${encodeURIComponent(name)}/screen`;
$('#screen-link').href = screenURL;
$('#screen-link').textContent = screenURL;

const state = {
  show: name, ws: 'connecting', air: 'off', screens: [], mode: { palette: 'redblue', color: '#ffffff', gain: 1 }, text: '',
  file: '', duration: 0, playing: false, mic: false, stream: 'show-' + name, iceServers: [], errors: [], epoch: '',
};

// ---- audio graph: sources → master (volume) → WHIP track, analyser, monitor ----
const ac = new AudioContext({ latencyHint: 'interactive' });
const master = ac.createGain();
const dest = ac.createMediaStreamDestination();
const analyser = ac.createAnalyser();
analyser.fftSize = 4096;
analyser.smoothingTimeConstant = 0.6;
const monitor = ac.createGain();
monitor.gain.value = 0;
master.connect(dest);
master.connect(analyser);
master.connect(monitor);
monitor.connect(ac.destination);
// Chrome sends no RTP for a WebAudio track whose graph is silent (nothing
// playing yet, or paused), and the SFU only announces a track once packets
// arrive: a -100 dBFS DC offset keeps the stream flowing, inaudibly
// (screens skip the 0 Hz bin).
const keepAlive = ac.createConstantSource();
keepAlive.offset.value = 1e-5;
keepAlive.connect(dest);
keepAlive.start();

const FADE = 0.015; // seconds
let buffer = null, src = null, offset = 0, startedAt = 0;
let micStream = null, micSrc = null;

function toast(text, kind = 'info') {
  const t = el('div', { class: 'toast ' + kind, role: kind === 'error' ? 'alert' : 'status' }, text);
  $('#toasts').append(t);
  setTimeout(() => t.remove(), 4000);
  if (kind === 'error') state.errors.push(text);
}

function resume() {
  if (ac.state !== 'running') ac.resume().catch(() => {});
}
document.addEventListener('pointerdown', resume);
document.addEventListener('keydown', resume);

function position() {
  if (!buffer) return 0;
  if (!src) return offset;
  const p = ac.currentTime - startedAt;
  return src.loop ? p % buffer.duration : Math.min(p, buffer.duration);
}

function startAt(at) {
  stopSource();
  src = ac.createBufferSource();
  src.buffer = buffer;
  src.loop = $('#loop').checked;
  // A short fade in and out: no clicks on play, pause and seek.
  const fade = ac.createGain();
  const t = ac.currentTime;
  fade.gain.setValueAtTime(0, t);
  fade.gain.linearRampToValueAtTime(1, t + FADE);
  src.connect(fade).connect(master);
  /** @type {any} */ (src).fade = fade;
  const me = src;
  src.onended = () => {
    if (src !== me) return; // stopped by us
    src = null;
    offset = 0;
    state.playing = false;
    renderTransport();
  };
  src.start(0, at);
  startedAt = ac.currentTime - at;
  state.playing = true;
}

function stopSource() {
  if (!src) return;
  const s = src;
  src = null;
  const t = ac.currentTime;
  s.fade.gain.cancelScheduledValues(t);
  s.fade.gain.setValueAtTime(s.fade.gain.value, t);
  s.fade.gain.linearRampToValueAtTime(0, t + FADE);
  s.onended = () => s.fade.disconnect();
  try { s.stop(t + FADE); } catch { s.fade.disconnect(); }
}

function playPause() {
  resume();
  if (!buffer) return;
  if (state.playing) {
    offset = position();
    stopSource();
    state.playing = false;
  } else {
    stopMic();
    startAt(offset >= buffer.duration ? 0 : offset);
    ensurePublished();
  }
  renderTransport();
}

async function loadFile(file) {
  resume();
  $('#now').textContent = `Decoding ${file.name}…`;
  try {
    const data = await file.arrayBuffer();
    const buf = await ac.decodeAudioData(data);
    stopSource();
    buffer = buf;
    offset = 0;
    state.playing = false;
    state.file = file.name;
    state.duration = buf.duration;
    $('#now').textContent = `${file.name} · ${buf.numberOfChannels === 1 ? 'mono' : buf.numberOfChannels + ' channels'} · ${clock(buf.duration)}`;
    $('#seek').max = String(buf.duration);
    $('#dur').textContent = clock(buf.duration);
    ensurePublished();
  } catch (e) {
    $('#now').textContent = 'This browser cannot decode that file.';
    toast(`Cannot play ${file.name}: ${e.message || e}`, 'error');
  }
  renderTransport();
}

async function toggleMic() {
  resume();
  if (state.mic) { stopMic(); renderTransport(); return; }
  try {
    micStream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  } catch (e) {
    toast('Microphone not available: ' + (e.message || e.name), 'error');
    return;
  }
  if (state.playing) playPause();
  micSrc = ac.createMediaStreamSource(micStream);
  micSrc.connect(master);
  state.mic = true;
  $('#now').textContent = 'Microphone: ' + (micStream.getAudioTracks()[0].label || 'default');
  ensurePublished();
  renderTransport();
}

function stopMic() {
  if (!state.mic) return;
  micSrc.disconnect();
  micStream.getTracks().forEach((t) => t.stop());
  micSrc = micStream = null;
  state.mic = false;
}

// toneBurst plays a sine of freq Hz for ms into the show and returns the
// wall-clock time (ms since the epoch) it was started at.
function toneBurst(freq = 1000, ms = 300, gain = 0.5) {
  resume();
  ensurePublished();
  const osc = ac.createOscillator();
  const g = ac.createGain();
  osc.frequency.value = freq;
  g.gain.value = gain;
  osc.connect(g).connect(master);
  const t0 = performance.timeOrigin + performance.now();
  osc.start();
  osc.stop(ac.currentTime + ms / 1000);
  osc.onended = () => g.disconnect();
  return t0;
}

// The page's library object, for debugging and the browser tests: the WHIP
// session of the show's audio (whip.js Session); and toneBurst, an
// instrument for the latency benchmark (a tone into the show, as a file
// would play). Nothing of the page's state: that is on the page (#ctl,
// #air, #play's and #btn-mic's aria-pressed, #now).
/** @type {any} */ (window).parleyApp = Object.freeze({ get session() { return session; }, toneBurst });

// sweep glides a tone across the spectrum so each screen lights in turn.
function sweep(seconds = 6) {
  resume();
  ensurePublished();
  const osc = ac.createOscillator();
  const g = ac.createGain();
  const t = ac.currentTime;
  osc.frequency.setValueAtTime(MIN_FREQ, t);
  osc.frequency.exponentialRampToValueAtTime(MAX_FREQ, t + seconds);
  g.gain.setValueAtTime(0, t);
  g.gain.linearRampToValueAtTime(0.4, t + 0.05);
  g.gain.setValueAtTime(0.4, t + seconds - 0.05);
  g.gain.linearRampToValueAtTime(0, t + seconds);
  osc.connect(g).connect(master);
  osc.start(t);
  osc.stop(t + seconds);
  osc.onended = () => g.disconnect();
}

// ---- publishing over WHIP ----
let session = null, publishing = false, wantAir = false, retry = 0;

async function ensurePublished() {
  wantAir = true;
  if (publishing || (session && !session.closed)) return;
  publishing = true;
  clearTimeout(retry);
  setAir('connecting');
  try {
    const s = await publish('/api/show-media/whip/' + encodeURIComponent(state.stream), dest.stream.getAudioTracks()[0], { token, iceServers: state.iceServers });
    session = s;
    let lost = 0;
    const again = () => {
      if (s !== session) return;
      session.close();
      session = null;
      setAir('connecting');
      clearTimeout(retry);
      retry = setTimeout(ensurePublished, 500);
    };
    s.pc.addEventListener('connectionstatechange', () => {
      if (s !== session) return;
      const cs = s.pc.connectionState;
      clearTimeout(lost);
      if (cs === 'connected') setAir('on');
      if (cs === 'failed' || cs === 'closed') again();
      // The server went away (restart, network change): publish afresh.
      if (cs === 'disconnected') lost = setTimeout(again, 4000);
    });
    if (s.pc.connectionState === 'connected') setAir('on');
  } catch (e) {
    if (e.code === 'conflict') {
      setAir('busy');
      retry = setTimeout(ensurePublished, 3000);
    } else {
      setAir('error');
      toast('Publishing the audio failed: ' + e.message, 'error');
      retry = setTimeout(ensurePublished, 3000);
    }
  } finally {
    publishing = false;
  }
}

function setAir(s) {
  state.air = s;
  const p = $('#air');
  p.dataset.state = { on: 'joined', connecting: 'connecting', busy: 'reconnecting', error: 'reconnecting', off: 'connecting' }[s];
  p.textContent = { on: 'On air', connecting: 'Going on air…', busy: 'Another host page is on air', error: 'Off air (retrying)', off: 'Off air' }[s];
}
window.addEventListener('pagehide', () => { if (session) session.close(); });

// ---- control channel ----
const socket = new ControlSocket(name, () => {
  const q = new URLSearchParams({ role: 'host' });
  if (token) q.set('token', token);
  return q.toString();
}, { onMessage, onState });

function onState(s, ev) {
  state.ws = s;
  const p = $('#ctl');
  p.dataset.state = s === 'open' ? 'joined' : s === 'closed' ? 'reconnecting' : 'connecting';
  p.textContent = s === 'open' ? 'Controls live' : s === 'closed' ? 'Reconnecting…' : 'Connecting…';
  if (s === 'closed' && ev && (ev.code === 1008 || ev.code === 1013) && ev.reason) toast(ev.reason, 'error');
}

function onMessage(m) {
  switch (m.type) {
    case 'hello':
      state.stream = m.stream;
      state.iceServers = m.iceServers || [];
      if (state.epoch && m.epoch !== state.epoch && session) {
        // The server restarted: our WHIP session is gone; publish afresh.
        session.close();
        session = null;
      }
      state.epoch = m.epoch;
      if (wantAir) ensurePublished();
      break;
    case 'screens':
      state.screens = m.screens || [];
      state.mode = m.mode || state.mode;
      state.text = m.text || '';
      renderScreens();
      renderLook();
      break;
    case 'error':
      toast(m.message, 'error');
      break;
  }
}

// ---- the wall of screens ----
const tiles = new Map(); // id -> {root, swatch, ...}

function move(id, delta) {
  const order = state.screens.map((s) => s.id);
  const i = order.indexOf(id), j = i + delta;
  if (i < 0 || j < 0 || j >= order.length) return;
  [order[i], order[j]] = [order[j], order[i]];
  socket.send({ type: 'layout', order });
}

function makeTile(s) {
  const lo = el('input', { type: 'number', min: '1', max: '24000', step: '1', 'aria-label': 'Lowest frequency (Hz)' });
  const hi = el('input', { type: 'number', min: '1', max: '24000', step: '1', 'aria-label': 'Highest frequency (Hz)' });
  const label = el('input', { type: 'text', maxlength: '40', 'aria-label': 'Label' });
  const editor = el('form', { class: 'tile-edit', hidden: true },
    el('div', { class: 'row' }, label),
    el('div', { class: 'row' }, lo, el('span', { class: 'muted' }, '–'), hi, el('span', { class: 'muted' }, 'Hz')),
    el('div', { class: 'row' }, el('button', { class: 'btn small primary', type: 'submit' }, 'Set'),
      el('button', { class: 'btn small ghost', type: 'button', onclick: () => { editor.hidden = true; } }, 'Cancel')));
  editor.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const m = { type: 'assign', screen: s.id };
    const a = Number(lo.value), b = Number(hi.value);
    const cur = t.info.band;
    if (a > 0 && b > a && (a !== Math.round(cur[0]) || b !== Math.round(cur[1]))) m.band = [a, b];
    if (label.value.trim() && label.value !== t.info.label) m.label = label.value.trim();
    if (m.band || m.label) socket.send(m);
    editor.hidden = true;
  });
  const t = {
    root: el('div', { class: 'show-tile', dataset: { id: s.id } }),
    swatch: el('div', { class: 'swatch' }),
    level: el('span', { class: 'level' }),
    meter: el('div', { class: 'meter' }),
    label: el('span', { class: 'tile-label' }),
    band: el('span', { class: 'band' }),
    editor, lo, hi, labelInput: label, info: s,
  };
  const openEditor = () => {
    lo.value = Math.round(t.info.band[0]);
    hi.value = Math.round(t.info.band[1]);
    label.value = t.info.label;
    editor.hidden = false;
    lo.focus();
  };
  t.root.append(
    el('div', { class: 'tile-top' }, el('span', { class: 'dot' }), t.label),
    t.band,
    el('div', { class: 'swatch-box' }, t.swatch, t.level),
    el('div', { class: 'meter-box' }, t.meter),
    el('div', { class: 'tile-bottom' },
      el('span', { class: 'tile-actions' },
        el('button', { class: 'btn icon small move-left', type: 'button', title: 'Move left (lower band)', 'aria-label': 'Move left', onclick: () => move(t.info.id, -1) }, '◀'),
        el('button', { class: 'btn icon small move-right', type: 'button', title: 'Move right (higher band)', 'aria-label': 'Move right', onclick: () => move(t.info.id, 1) }, '▶'),
        el('button', { class: 'btn small edit', type: 'button', onclick: openEditor }, 'Edit'))),
    editor);
  return t;
}

function renderScreens() {
  const box = $('#tiles');
  $('#count').textContent = String(state.screens.length);
  const seen = new Set();
  state.screens.forEach((s, i) => {
    let t = tiles.get(s.id);
    if (!t) { t = makeTile(s); tiles.set(s.id, t); }
    t.info = s;
    seen.add(s.id);
    if (box.children[i] !== t.root) box.insertBefore(t.root, box.children[i] || null);
    t.root.dataset.online = String(s.online);
    t.root.dataset.manual = String(s.manual);
    t.root.dataset.level = String(s.level);
    t.label.textContent = s.label;
    t.band.textContent = fmtBand(s.band) + (s.manual ? ' · set' : '');
    t.level.textContent = String(s.level);
    t.swatch.style.background = rgbCSS(paint(s.level, { ...state.mode, index: i, count: state.screens.length, beat: s.level / 255 }));
    t.meter.style.width = (s.level / 2.55).toFixed(1) + '%';
  });
  for (const [id, t] of tiles) {
    if (!seen.has(id)) { t.root.remove(); tiles.delete(id); }
  }
  const empty = box.querySelector('.empty');
  if (state.screens.length === 0 && !empty) box.append(el('p', { class: 'empty' }, 'No screens yet.'));
  if (state.screens.length > 0 && empty) empty.remove();
}

// ---- look controls ----
const paletteSel = $('#palette');
for (const [k, v] of Object.entries(PALETTES)) paletteSel.append(el('option', { value: k }, v));

function renderLook() {
  if (document.activeElement !== paletteSel) paletteSel.value = state.mode.palette;
  if (document.activeElement !== $('#color')) $('#color').value = state.mode.color.length === 4
    ? '#' + state.mode.color.slice(1).split('').map((c) => c + c).join('') : state.mode.color;
  const g = $('#gain');
  if (document.activeElement !== g) g.value = String(Math.log2(state.mode.gain || 1));
  $('#gain-val').textContent = '×' + (state.mode.gain || 1).toFixed(2).replace(/\.?0+$/, '');
}

paletteSel.addEventListener('change', () => socket.send({ type: 'mode', palette: paletteSel.value }));
$('#color').addEventListener('change', () => socket.send({ type: 'mode', color: $('#color').value, palette: 'mono' }));
$('#gain').addEventListener('change', () => {
  const gain = Math.round(Math.pow(2, Number($('#gain').value)) * 100) / 100;
  socket.send({ type: 'mode', gain });
});
$('#btn-flash').addEventListener('click', () => socket.send({ type: 'flash', color: $('#flash-color').value, ms: 400 }));
$('#btn-text').addEventListener('click', () => socket.send({ type: 'text', text: $('#text').value }));
$('#text').addEventListener('keydown', (ev) => { if (ev.key === 'Enter') socket.send({ type: 'text', text: $('#text').value }); });
$('#btn-text-clear').addEventListener('click', () => { $('#text').value = ''; socket.send({ type: 'text', text: '' }); });
$('#btn-auto').addEventListener('click', () => socket.send({ type: 'layout', auto: true }));
$('#btn-copy').addEventListener('click', async () => {
  try { await navigator.clipboard.writeText(screenURL); toast('Screen link copied'); } catch { toast(screenURL); }
});

// ---- transport ----
function clock(s) {
  s = Math.max(0, Math.floor(s));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

function renderTransport() {
  const p = $('#play');
  p.disabled = !buffer;
  p.textContent = state.playing ? 'Pause' : 'Play';
  p.setAttribute('aria-pressed', String(state.playing));
  $('#seek').disabled = !buffer;
  $('#btn-mic').setAttribute('aria-pressed', String(state.mic));
  $('#btn-mic').textContent = state.mic ? 'Stop microphone' : 'Use microphone';
}

$('#file').addEventListener('change', () => { const f = $('#file').files[0]; if (f) loadFile(f); });
$('#play').addEventListener('click', playPause);
$('#btn-mic').addEventListener('click', toggleMic);
$('#btn-sweep').addEventListener('click', () => sweep());
$('#seek').addEventListener('input', () => {
  const at = Number($('#seek').value);
  if (state.playing) startAt(at);
  else offset = at;
  $('#pos').textContent = clock(at);
});
$('#volume').addEventListener('input', () => { master.gain.setTargetAtTime(Number($('#volume').value), ac.currentTime, 0.02); });
$('#loop').addEventListener('change', () => { if (src) src.loop = $('#loop').checked; });
$('#monitor').addEventListener('change', () => { resume(); monitor.gain.value = $('#monitor').checked ? 1 : 0; });

// ---- spectrum with the screens' bands ----
const spec = $('#spectrum');
const sg = spec.getContext('2d');
const fbuf = new Float32Array(analyser.frequencyBinCount);
const lx = (f) => (Math.log(f / MIN_FREQ) / Math.log(MAX_FREQ / MIN_FREQ)) * spec.width;

function drawSpectrum() {
  const W = spec.width, H = spec.height;
  sg.clearRect(0, 0, W, H);
  state.screens.forEach((s, i) => {
    const x0 = Math.max(0, lx(s.band[0])), x1 = Math.min(W, lx(s.band[1]));
    sg.fillStyle = i % 2 ? 'rgba(79,124,255,.10)' : 'rgba(79,124,255,.18)';
    sg.fillRect(x0, 0, x1 - x0, H);
    sg.fillStyle = 'rgba(232,235,241,.7)';
    sg.font = '11px system-ui, sans-serif';
    if (x1 - x0 > 30) sg.fillText(s.label, x0 + 4, 13, x1 - x0 - 8);
  });
  analyser.getFloatFrequencyData(fbuf);
  const binHz = ac.sampleRate / analyser.fftSize;
  sg.beginPath();
  for (let x = 0; x < W; x += 2) {
    const f = MIN_FREQ * Math.pow(MAX_FREQ / MIN_FREQ, x / W);
    const db = fbuf[Math.min(fbuf.length - 1, Math.round(f / binHz))];
    const y = H - Math.max(0, Math.min(1, (db + 100) / 80)) * H;
    if (x === 0) sg.moveTo(x, y); else sg.lineTo(x, y);
  }
  sg.strokeStyle = '#6b93ff';
  sg.lineWidth = 2;
  sg.stroke();
  sg.fillStyle = 'rgba(154,163,178,.8)';
  for (const f of [100, 1000, 10000]) sg.fillText(fmtHz(f), lx(f) + 3, H - 4);
  if (buffer && !$('#seek').matches(':active')) {
    const p = position();
    $('#seek').value = String(p);
    $('#pos').textContent = clock(p);
  }
  requestAnimationFrame(drawSpectrum);
}
requestAnimationFrame(drawSpectrum);
renderTransport();
renderLook();
setAir('off');
