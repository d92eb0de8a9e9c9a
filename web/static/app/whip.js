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

// Simulcast layers a browser publisher sends (the SFU knows rids q/h/f).
export const SIMULCAST = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500000 },
  { rid: 'f', maxBitrate: 2500000 },
];

// publishMedia sends tracks (audio and/or video) to url (a WHIP endpoint);
// video goes as three simulcast layers unless simulcast is false. The
// session's .video / .audio senders take replaceTrack for source switches.
export async function publishMedia(url, tracks, { token = '', iceServers = [], simulcast = true } = {}) {
  const pc = new RTCPeerConnection({ iceServers, bundlePolicy: 'max-bundle' });
  try {
    const senders = {};
    for (const t of tracks) {
      const init = { direction: 'sendonly' };
      if (t.kind === 'video' && simulcast) init.sendEncodings = SIMULCAST.map((e) => ({ ...e }));
      senders[t.kind] = pc.addTransceiver(t, init).sender;
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
