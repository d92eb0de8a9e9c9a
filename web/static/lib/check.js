// @ts-check
// The connection check (/check, docs/check.md): from this browser, can
// the server's STUN, TURN (over UDP, TCP and TLS) and media ports (the
// SFU's UDP port and its ICE-TCP port) be reached? Each probe uses its own
// RTCPeerConnection restricted to one server and transport, has its own
// timeout, and closes its connection when done.

import { api, readError } from './api.js';
import { ParleyError } from './errors.js';

/**
 * One probe's outcome. status: "ok" (it works), "blocked" (it was tried and
 * failed or timed out) or "unavailable" (this server does not offer it).
 * needsToken: a TURN or media probe not run because the server (auth on)
 * lends its relay and probes its media port only for a valid access token.
 * For STUN, natted tells whether the browser's address is translated
 * (a server-reflexive candidate different from its own address appeared).
 * @typedef {{
 *   id: 'stun'|'turn-udp'|'turn-tcp'|'turn-tls'|'media-udp'|'media-tcp',
 *   status: 'ok'|'blocked'|'unavailable',
 *   port?: number,
 *   natted?: boolean,
 *   needsToken?: boolean,
 *   error?: string,
 * }} ProbeResult
 */

/**
 * GET /api/check: the server's STUN/TURN (with a short-lived TURN
 * credential) and its media ports (0 when off). With auth on and no valid
 * token, STUN only and turnNeedsToken.
 * @typedef {{iceServers: RTCIceServer[], media: {udp: number, tcp: number}, turnNeedsToken?: boolean}} CheckInfo
 */

/** @param {string} [token] an access token (any grant) @returns {Promise<CheckInfo>} */
export function checkInfo(token) {
  return api('/api/check', { token });
}

/** How long one probe may take before it counts as blocked. */
export const PROBE_TIMEOUT_MS = 8000;

/**
 * The ICE server entry for the first URL of a kind: "stun:", "turn:" with
 * transport udp or tcp (no transport means UDP), or "turns:".
 * @param {RTCIceServer[]} servers
 * @param {'stun'|'turn-udp'|'turn-tcp'|'turn-tls'} kind
 * @returns {RTCIceServer|null}
 */
export function pickServer(servers, kind) {
  for (const s of servers) {
    const urls = Array.isArray(s.urls) ? s.urls : [s.urls];
    for (const u of urls) {
      const [scheme] = u.split(':', 1);
      const transport = (/[?&]transport=(\w+)/.exec(u) || [])[1] || (scheme === 'turns' ? 'tcp' : 'udp');
      const match =
        (kind === 'stun' && scheme === 'stun') ||
        (kind === 'turn-udp' && scheme === 'turn' && transport === 'udp') ||
        (kind === 'turn-tcp' && scheme === 'turn' && transport === 'tcp') ||
        (kind === 'turn-tls' && scheme === 'turns');
      if (match) return { urls: [u], username: s.username, credential: s.credential };
    }
  }
  return null;
}

/**
 * The one-shot end of a probe: the first call closes pc and resolves;
 * after timeoutMs it ends with timedOut.
 * @param {RTCPeerConnection} pc
 * @param {(r: ProbeResult) => void} resolve
 * @param {ProbeResult} timedOut
 * @param {number} timeoutMs
 * @returns {(r: ProbeResult) => void}
 */
function settle(pc, resolve, timedOut, timeoutMs) {
  let done = false;
  /** @param {ProbeResult} r */
  const finish = (r) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    pc.close();
    resolve(r);
  };
  const timer = setTimeout(() => finish(timedOut), timeoutMs);
  return finish;
}

/**
 * Gathers candidates for a data-channel-only offer and resolves with
 * decide()'s verdict: decide sees every candidate and returns a result to
 * stop early, or null to go on. At the end of gathering, atEnd decides.
 * Times out as blocked.
 * @param {RTCConfiguration} config
 * @param {ProbeResult['id']} id
 * @param {(c: RTCIceCandidate) => ProbeResult|null} decide
 * @param {(errors: string[]) => ProbeResult} atEnd
 * @param {number} timeoutMs
 * @returns {Promise<ProbeResult>}
 */
function gather(config, id, decide, atEnd, timeoutMs) {
  return new Promise((resolve) => {
    const pc = new RTCPeerConnection(config);
    /** @type {string[]} */
    const errors = [];
    const finish = settle(pc, resolve, { id, status: 'blocked', error: 'no answer within ' + timeoutMs / 1000 + ' s' }, timeoutMs);
    pc.addEventListener('icecandidateerror', (ev) => {
      const e = /** @type {RTCPeerConnectionIceErrorEvent} */ (ev);
      errors.push(`${e.errorCode} ${e.errorText}`.trim());
    });
    pc.addEventListener('icecandidate', (ev) => {
      if (ev.candidate) {
        const r = decide(ev.candidate);
        if (r) finish(r);
      } else {
        finish(atEnd(errors));
      }
    });
    pc.createDataChannel('check');
    pc.createOffer()
      .then((o) => pc.setLocalDescription(o))
      .catch((e) => finish({ id, status: 'blocked', error: String(e) }));
  });
}

/**
 * STUN: a server-reflexive candidate appears (the browser is behind a NAT
 * and STUN told it its public address). Gathering that ends with no such
 * candidate and no STUN error means STUN answered with the browser's own
 * address (no NAT; browsers drop a reflexive candidate equal to a host
 * one). An error or the timeout means blocked.
 * @param {RTCIceServer|null} server
 * @param {number} [timeoutMs]
 * @returns {Promise<ProbeResult>}
 */
export function probeStun(server, timeoutMs = PROBE_TIMEOUT_MS) {
  if (!server) return Promise.resolve({ id: 'stun', status: 'unavailable' });
  return gather(
    { iceServers: [server] },
    'stun',
    (c) => (c.type === 'srflx' ? { id: 'stun', status: 'ok', natted: true } : null),
    (errors) => (errors.length ? { id: 'stun', status: 'blocked', error: errors[0] } : { id: 'stun', status: 'ok', natted: false }),
    timeoutMs,
  );
}

/**
 * TURN over one transport: with iceTransportPolicy "relay" and this one
 * server, a relay candidate appears only when the browser reached the TURN
 * server and it allocated a relay address with the credential.
 * @param {'turn-udp'|'turn-tcp'|'turn-tls'} id
 * @param {RTCIceServer|null} server
 * @param {number} [timeoutMs]
 * @returns {Promise<ProbeResult>}
 */
export function probeTurn(id, server, timeoutMs = PROBE_TIMEOUT_MS) {
  if (!server) return Promise.resolve({ id, status: 'unavailable' });
  return gather(
    { iceServers: [server], iceTransportPolicy: 'relay' },
    id,
    (c) => (c.type === 'relay' ? { id, status: 'ok' } : null),
    (errors) => ({ id, status: 'blocked', error: errors[0] || 'no relay address' }),
    timeoutMs,
  );
}

/**
 * The SFU's media port over one transport: a data channel to a probe
 * connection on the SFU's own sockets (POST /api/check/media), which
 * answers only with candidates of that transport. The data channel opens
 * and echoes a message only when ICE, DTLS and SCTP all got through.
 * With auth on the server probes only for a valid access token (any grant).
 * @param {'udp'|'tcp'} transport
 * @param {number} port the port GET /api/check gave (0: off)
 * @param {number} [timeoutMs]
 * @param {string} [token] an access token, for servers with auth on
 * @returns {Promise<ProbeResult>}
 */
export function probeMedia(transport, port, timeoutMs = PROBE_TIMEOUT_MS, token = '') {
  /** @type {ProbeResult['id']} */
  const id = transport === 'tcp' ? 'media-tcp' : 'media-udp';
  if (!port) return Promise.resolve({ id, status: 'unavailable' });
  return new Promise((resolve) => {
    const pc = new RTCPeerConnection({ iceServers: [] });
    const dc = pc.createDataChannel('check');
    const finish = settle(pc, resolve, { id, status: 'blocked', port, error: 'no connection within ' + timeoutMs / 1000 + ' s' }, timeoutMs);
    dc.addEventListener('open', () => dc.send('ok'));
    dc.addEventListener('message', () => finish({ id, status: 'ok', port }));
    pc.addEventListener('connectionstatechange', () => {
      if (pc.connectionState === 'failed') finish({ id, status: 'blocked', port, error: 'connection failed' });
    });
    (async () => {
      await pc.setLocalDescription(await pc.createOffer());
      await new Promise((r) => {
        if (pc.iceGatheringState === 'complete') return r(null);
        pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r(null));
      });
      let res;
      try {
        res = await fetch('/api/check/media?transport=' + transport, {
          method: 'POST', cache: 'no-store',
          headers: token ? { 'Content-Type': 'application/sdp', Authorization: 'Bearer ' + token } : { 'Content-Type': 'application/sdp' },
          body: pc.localDescription?.sdp || '',
        });
      } catch (e) {
        throw new ParleyError('unreachable', `server unreachable (${e instanceof Error ? e.message : e})`);
      }
      if (res.status === 404) return finish({ id, status: 'unavailable' });
      if (!res.ok) throw await readError(res);
      await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    })().catch((e) => finish({ id, status: 'blocked', port, error: e instanceof Error ? e.message : String(e) }));
  });
}

/**
 * Runs every probe at once; onResult sees each as it ends. Resolves with
 * all of them in a fixed order: stun, turn-udp, turn-tcp, turn-tls,
 * media-udp, media-tcp.
 * token: an access token, for servers with auth on (their TURN and media
 * probe need one; without it those results say needsToken).
 * @param {(r: ProbeResult) => void} [onResult]
 * @param {{timeoutMs?: number, token?: string}} [opts]
 * @returns {Promise<ProbeResult[]>}
 */
export async function runChecks(onResult = () => {}, { timeoutMs = PROBE_TIMEOUT_MS, token = '' } = {}) {
  const info = await checkInfo(token);
  const s = info.iceServers || [];
  /** @param {Promise<ProbeResult>} p */
  const report = (p) => p.then((r) => { onResult(r); return r; });
  /** @param {'turn-udp'|'turn-tcp'|'turn-tls'} id @returns {Promise<ProbeResult>} */
  const turn = (id) => info.turnNeedsToken
    ? Promise.resolve({ id, status: 'unavailable', needsToken: true })
    : probeTurn(id, pickServer(s, id), timeoutMs);
  /** @param {'udp'|'tcp'} t @returns {Promise<ProbeResult>} */
  const media = (t) => info.turnNeedsToken
    ? Promise.resolve({ id: t === 'tcp' ? 'media-tcp' : 'media-udp', status: 'unavailable', needsToken: true })
    : probeMedia(t, (t === 'tcp' ? info.media?.tcp : info.media?.udp) || 0, timeoutMs, token);
  return Promise.all([
    report(probeStun(pickServer(s, 'stun'), timeoutMs)),
    report(turn('turn-udp')),
    report(turn('turn-tcp')),
    report(turn('turn-tls')),
    report(media('udp')),
    report(media('tcp')),
  ]);
}
