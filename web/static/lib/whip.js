// @ts-check
// WHIP (publish) and WHEP (play): one POST with the SDP offer once ICE
// gathering is complete (no trickle), DELETE to end. Errors are ParleyErrors
// with .status and .code from the server's JSON error body.

import { authHeaders, readError } from './api.js';
import { SIMULCAST } from './simulcast.js';

/** @typedef {import('./errors.js').IceServer} IceServer */
/** @typedef {{token?: string, iceServers?: IceServer[]}} SessionOptions */
/** @typedef {(stream: MediaStream, receiver: RTCRtpReceiver) => void} OnTrack */

/** The WHEP error code of a viewer refused past the stream's --max-webrtc-viewers (503). */
export const VIEWER_LIMIT = 'webrtc_viewer_limit';

/** @param {RTCPeerConnection} pc @param {number} ms @returns {Promise<void>} */
function waitGathering(pc, ms) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { clearTimeout(t); pc.removeEventListener('icegatheringstatechange', check); resolve(); };
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    const t = setTimeout(done, ms);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

// Opus for music: ask for a higher bitrate and stereo in what we send.
/** @param {string} sdp */
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
  /** @param {RTCPeerConnection} pc @param {string} location @param {string} token */
  constructor(pc, location, token) {
    this.pc = pc;
    this.location = location;
    /** @private */
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

/**
 * Offers, POSTs the offer to url and takes the answer; resolves with the
 * session's URL. @param {RTCPeerConnection} pc @param {string} url @param {string} token @param {boolean} tune
 */
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

/** @param {RTCRtpTransceiver} tr */
function preferOpus(tr) {
  if (!RTCRtpReceiver.getCapabilities || !tr.setCodecPreferences) return;
  const caps = RTCRtpReceiver.getCapabilities('audio');
  if (!caps) return;
  const opus = caps.codecs.filter((c) => /opus/i.test(c.mimeType));
  if (opus.length) tr.setCodecPreferences(opus);
}

// publish sends an audio track to url (a WHIP endpoint).
/** @param {string} url @param {MediaStreamTrack} track @param {SessionOptions} [opts] */
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
/** @param {string} url @param {SessionOptions & {onTrack?: OnTrack}} [opts] */
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
/** @param {RTCRtpTransceiver} tr */
function preferH264(tr) {
  if (!tr.setCodecPreferences) return;
  /** @type {RTCRtpCapabilities} */
  const all = (RTCRtpReceiver.getCapabilities && RTCRtpReceiver.getCapabilities('video')) || { codecs: [], headerExtensions: [] };
  /** @param {RTCRtpCodec} c */
  const h264 = (c) => /h264/i.test(c.mimeType);
  /** @param {RTCRtpCodec} c */
  const rank = (c) => (/packetization-mode=1/.test(c.sdpFmtpLine || '') ? 0 : 2) + (/profile-level-id=42e0/i.test(c.sdpFmtpLine || '') ? 0 : 1);
  const first = all.codecs.filter(h264).sort((a, b) => rank(a) - rank(b));
  if (!first.length) return; // no H.264 in this browser: its default (VP8)
  try {
    tr.setCodecPreferences([...first, ...all.codecs.filter((c) => !h264(c))]);
  } catch (e) {
    console.warn('H.264 preference not applied', e);
  }
}

// publishMedia sends tracks (audio and/or video) to url (a WHIP endpoint);
// video goes as three simulcast layers unless simulcast is false, as H.264
// when h264 is true (the server's prefer_h264). The session's .video /
// .audio senders take replaceTrack for source switches.
/**
 * @param {string} url @param {MediaStreamTrack[]} tracks
 * @param {SessionOptions & {simulcast?: boolean, h264?: boolean}} [opts]
 * @returns {Promise<Session & {audio?: RTCRtpSender, video?: RTCRtpSender}>}
 */
export async function publishMedia(url, tracks, { token = '', iceServers = [], simulcast = true, h264 = false } = {}) {
  const pc = new RTCPeerConnection({ iceServers, bundlePolicy: 'max-bundle' });
  try {
    /** @type {{audio?: RTCRtpSender, video?: RTCRtpSender}} */
    const senders = {};
    for (const t of tracks) {
      /** @type {RTCRtpTransceiverInit} */
      const init = { direction: 'sendonly' };
      if (t.kind === 'video' && simulcast) init.sendEncodings = SIMULCAST.map((e) => ({ ...e }));
      const tr = pc.addTransceiver(t, init);
      if (t.kind === 'video' && h264) preferH264(tr);
      senders[/** @type {'audio'|'video'} */ (t.kind)] = tr.sender;
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
/** @param {string} url @param {SessionOptions & {onTrack?: OnTrack}} [opts] */
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
