// Tiny WHIP (publish) / WHEP (play) client: one POST with the SDP offer
// once ICE gathering is complete (no trickle), DELETE to end.
// Errors carry .status and .code from the server's JSON error body.

export class WHIPError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function waitGathering(pc, ms) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { clearTimeout(t); pc.removeEventListener('icegatheringstatechange', check); resolve(); };
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    const t = setTimeout(done, ms);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

async function readError(res) {
  let code = 'http-' + res.status, message = res.statusText || ('HTTP ' + res.status);
  try {
    const j = await res.json();
    if (j && j.error) { code = j.error.code || code; message = j.error.message || message; }
  } catch { /* not JSON */ }
  return new WHIPError(res.status, code, message);
}

// Opus for music: ask for a higher bitrate and stereo in what we send.
function tuneOpus(sdp) {
  const m = sdp.match(/a=rtpmap:(\d+) opus\/48000/i);
  if (!m) return sdp;
  const pt = m[1];
  return sdp.replace(new RegExp('a=fmtp:' + pt + ' ([^\\r\\n]*)'), (line, params) => {
    const extra = ['maxaveragebitrate=128000', 'stereo=1', 'sprop-stereo=1'].filter((p) => !params.includes(p.split('=')[0] + '='));
    return extra.length ? line + ';' + extra.join(';') : line;
  });
}

// Session is one WHIP or WHEP session.
export class Session {
  constructor(pc, location, token) {
    this.pc = pc;
    this.location = location;
    this.token = token;
    this.closed = false;
  }

  // close ends the session on the server (best effort) and locally.
  close() {
    if (this.closed) return;
    this.closed = true;
    if (this.location) {
      fetch(this.location, { method: 'DELETE', keepalive: true, headers: authHeaders(this.token) }).catch(() => {});
    }
    this.pc.close();
  }
}

// authHeaders is the Bearer header of token, or none.
export function authHeaders(token) {
  return token ? { Authorization: 'Bearer ' + token } : {};
}

async function negotiate(pc, url, token, tune) {
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  await waitGathering(pc, 2000);
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp', ...authHeaders(token) },
    body: pc.localDescription.sdp,
  });
  if (res.status !== 201) throw await readError(res);
  const base = new URL(url, window.location.href);
  const location = new URL(res.headers.get('Location') || base.href, base).href;
  try {
    let answer = await res.text();
    if (tune) answer = tuneOpus(answer);
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  } catch (e) {
    fetch(location, { method: 'DELETE', keepalive: true, headers: authHeaders(token) }).catch(() => {});
    throw e;
  }
  return location;
}

function preferOpus(tr) {
  if (!RTCRtpReceiver.getCapabilities || !tr.setCodecPreferences) return;
  const caps = RTCRtpReceiver.getCapabilities('audio');
  if (!caps) return;
  const opus = caps.codecs.filter((c) => /opus/i.test(c.mimeType));
  if (opus.length) tr.setCodecPreferences(opus);
}

// publish sends an audio track to url (a WHIP endpoint).
export async function publish(url, track, { token = '', iceServers = [] } = {}) {
  const pc = new RTCPeerConnection({ iceServers, bundlePolicy: 'max-bundle' });
  try {
    const tr = pc.addTransceiver(track, { direction: 'sendonly' });
    preferOpus(tr);
    const location = await negotiate(pc, url, token, true);
    return new Session(pc, location, token);
  } catch (e) {
    pc.close();
    throw e;
  }
}

// play receives audio from url (a WHEP endpoint); onTrack gets the stream.
export async function play(url, { token = '', iceServers = [], onTrack } = {}) {
  const pc = new RTCPeerConnection({ iceServers, bundlePolicy: 'max-bundle' });
  pc.addEventListener('track', (ev) => {
    const stream = ev.streams[0] || new MediaStream([ev.track]);
    if (onTrack) onTrack(stream, ev.receiver);
  });
  try {
    const tr = pc.addTransceiver('audio', { direction: 'recvonly' });
    preferOpus(tr);
    const location = await negotiate(pc, url, token, false);
    return new Session(pc, location, token);
  } catch (e) {
    pc.close();
    throw e;
  }
}

// preferH264 puts H.264 first in a video transceiver's codecs (packetization
// mode 1 and constrained baseline first): LL-HLS, RTMP readers and MP4
// recordings carry H.264, not VP8. Others stay, after it.
function preferH264(tr) {
  if (!tr.setCodecPreferences) return;
  const all = (RTCRtpReceiver.getCapabilities && RTCRtpReceiver.getCapabilities('video')) || { codecs: [] };
  const h264 = (c) => /h264/i.test(c.mimeType);
  const rank = (c) => (/packetization-mode=1/.test(c.sdpFmtpLine || '') ? 0 : 2) + (/profile-level-id=42e0/i.test(c.sdpFmtpLine || '') ? 0 : 1);
  const first = all.codecs.filter(h264).sort((a, b) => rank(a) - rank(b));
  if (!first.length) return; // no H.264 in this browser: its default (VP8)
  try {
    tr.setCodecPreferences([...first, ...all.codecs.filter((c) => !h264(c))]);
  } catch (e) {
    console.warn('H.264 preference not applied', e);
  }
}

let infoPromise = null;
// serverInfo is the server's GET /api/ingest (fetched once per page): which
// ways in and out of a stream it offers, whether it wants tokens, and
// whether browser publishers should send H.264 (prefer_h264).
export function serverInfo() {
  if (!infoPromise) {
    infoPromise = fetch('/api/ingest', { cache: 'no-store' }).then((r) => {
      if (!r.ok) throw new Error(`HTTP ${r.status} from /api/ingest`);
      return r.json();
    });
    infoPromise.catch(() => { infoPromise = null; }); // the next call asks again
  }
  return infoPromise;
}

// Simulcast layers a browser publisher sends (the SFU knows rids q/h/f).
export const SIMULCAST = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500000 },
  { rid: 'f', maxBitrate: 2500000 },
];

// publishMedia sends tracks (audio and/or video) to url (a WHIP endpoint);
// video goes as three simulcast layers unless simulcast is false, as H.264
// when h264 is true (the server's prefer_h264). The session's .video /
// .audio senders take replaceTrack for source switches.
export async function publishMedia(url, tracks, { token = '', iceServers = [], simulcast = true, h264 = false } = {}) {
  const pc = new RTCPeerConnection({ iceServers, bundlePolicy: 'max-bundle' });
  try {
    const senders = {};
    for (const t of tracks) {
      const init = { direction: 'sendonly' };
      if (t.kind === 'video' && simulcast) init.sendEncodings = SIMULCAST.map((e) => ({ ...e }));
      const tr = pc.addTransceiver(t, init);
      if (t.kind === 'video' && h264) preferH264(tr);
      senders[t.kind] = tr.sender;
    }
    const location = await negotiate(pc, url, token, false);
    return Object.assign(new Session(pc, location, token), senders);
  } catch (e) {
    pc.close();
    throw e;
  }
}

// playMedia receives audio and video from url (a WHEP endpoint); onTrack
// gets the stream once per track.
export async function playMedia(url, { token = '', iceServers = [], onTrack } = {}) {
  const pc = new RTCPeerConnection({ iceServers, bundlePolicy: 'max-bundle' });
  const stream = new MediaStream();
  pc.addEventListener('track', (ev) => {
    stream.addTrack(ev.track);
    if (onTrack) onTrack(stream, ev.receiver);
  });
  try {
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.addTransceiver('video', { direction: 'recvonly' });
    const location = await negotiate(pc, url, token, false);
    return new Session(pc, location, token);
  } catch (e) {
    pc.close();
    throw e;
  }
}

// ---- HLS: the same stream as LL-HLS files (GET /hls/<stream>/index.m3u8),
// for when WebRTC cannot play it (the server's WebRTC viewer cap, a
// network that blocks WebRTC, or ?hls). hls.js is vendored and loaded only
// when a page plays HLS; Safari (HLS without MSE) plays it natively.

/** Where the vendored hls.js (npm 1.7.4, Apache-2.0, with its LICENSE) is served. */
export const HLS_LIB = '/vendor/hls.js-1.7.4/hls.min.mjs';

/** The WHEP error code of a viewer refused past the stream's --max-webrtc-viewers (503). */
export const VIEWER_LIMIT = 'webrtc_viewer_limit';

/**
 * The stream's LL-HLS playlist URL; with auth on, the subscribe token goes
 * in ?token= (the server carries it into the part and segment URLs).
 * @param {string} stream @param {string} [token]
 */
export function hlsURL(stream, token) {
  const u = `/hls/${encodeURIComponent(stream)}/index.m3u8`;
  return token ? `${u}?token=${encodeURIComponent(token)}` : u;
}

/** Whether video plays HLS by itself and there is no MSE for hls.js (Safari on iPhone). @param {HTMLVideoElement} video */
export function nativeHLS(video) {
  // @ts-ignore ManagedMediaSource is Safari's MSE
  const mse = !!(window.MediaSource || window.ManagedMediaSource);
  return !mse && video.canPlayType('application/vnd.apple.mpegurl') !== '';
}

/**
 * An HLS playback of url in video: hls.js (loaded now), or the browser's own
 * HLS. onError gets a WHIPError (.status is the HTTP status of a playlist or
 * part that failed, 0 otherwise) once playback cannot go on; close() stops.
 * latency() is how far behind the live edge it plays, in seconds (NaN before
 * it knows).
 * @param {HTMLVideoElement} video @param {string} url
 * @param {{onError?: (e: WHIPError) => void}} [opts]
 * @returns {Promise<{kind: 'hls.js'|'native', latency: () => number, close: () => void, hls?: any}>}
 */
export async function playHLS(video, url, { onError = () => {} } = {}) {
  if (nativeHLS(video)) {
    const err = () => onError(new WHIPError(0, 'hls_media', (video.error && video.error.message) || 'the browser could not play the HLS stream'));
    video.addEventListener('error', err);
    video.src = url;
    return {
      kind: 'native',
      latency: () => {
        // EXT-X-PROGRAM-DATE-TIME follows the server's wall clock.
        // @ts-ignore getStartDate is Safari's
        const start = video.getStartDate ? video.getStartDate().getTime() : NaN;
        return (Date.now() - start) / 1000 - video.currentTime;
      },
      close: () => {
        video.removeEventListener('error', err);
        video.removeAttribute('src');
        video.load();
      },
    };
  }
  const { default: Hls } = await import(HLS_LIB);
  if (!Hls.isSupported()) throw new WHIPError(0, 'hls_unsupported', 'this browser can play neither WebRTC nor HLS');
  // The ESM build has no inline worker: fMP4 needs no transmuxing anyway.
  // Behind the target delay (after a stall, or a start far from the live
  // edge), play up to 1.5x faster to catch up, as LL-HLS players do.
  const hls = new Hls({ lowLatencyMode: true, enableWorker: false, backBufferLength: 10, maxLiveSyncPlaybackRate: 1.5 });
  let recovered = 0;
  hls.on(Hls.Events.ERROR, (/** @type {any} */ _ev, /** @type {any} */ d) => {
    if (!d.fatal) return;
    if (d.type === Hls.ErrorTypes.MEDIA_ERROR && recovered++ < 2) {
      hls.recoverMediaError();
      return;
    }
    const status = (d.response && d.response.code) || 0;
    onError(new WHIPError(status, status ? 'http-' + status : d.details, status ? `HLS: HTTP ${status} for ${d.details}` : `HLS: ${d.details}`));
  });
  hls.loadSource(url);
  hls.attachMedia(video);
  return { kind: 'hls.js', hls, latency: () => hls.latency, close: () => hls.destroy() };
}
