// parley.js — the Parley browser client library.
//
// Plain ES module, no dependencies. It speaks Parley's signaling protocol over
// WebSocket (falling back to HTTP long-polling), keeps one RTCPeerConnection
// per remote member with perfect negotiation and trickle ICE, and offers data
// channels for control messages, chat and file transfer. See docs/client-js.md.

/** Size of one file chunk on the wire (payload bytes). */
export const CHUNK_SIZE = 16 * 1024;
const CHUNK_HEADER = 8; // u32 transfer id, u32 chunk index (big endian)
const BUFFER_HIGH = 1024 * 1024; // pause sending above this bufferedAmount
const BUFFER_LOW = 256 * 1024; // resume below this (bufferedAmountLowThreshold)
const RECONNECT_DELAYS = [1000, 2000, 3000, 5000, 8000, 10000];

/**
 * A member as the server describes it. identity/verified: the subject of the
 * member's token, checked by the server (absent on open servers); host: the
 * server holds the member to be a host of the room (from its token's grants).
 * @typedef {{id: string, name: string, identity?: string, verified?: boolean, host?: boolean}} MemberInfo
 * @typedef {{urls: string|string[], username?: string, credential?: string}} IceServer
 * @typedef {'idle'|'connecting'|'joined'|'reconnecting'|'left'|'closed'} ClientState
 * @typedef {{code: string, message: string}} ServerError
 */

/** Error with a machine-readable code (server error codes, plus "full", "unreachable"). */
export class ParleyError extends Error {
  /** @param {string} code @param {string} message */
  constructor(code, message) {
    super(message);
    this.name = 'ParleyError';
    this.code = code;
  }
}

/** @param {EventTarget} target @param {string} type @param {any} [detail] */
function emit(target, type, detail) {
  target.dispatchEvent(new CustomEvent(type, { detail }));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Hex SHA-256 of an ArrayBuffer or Blob. @param {ArrayBuffer|Blob} data */
export async function sha256Hex(data) {
  const buf = data instanceof Blob ? await data.arrayBuffer() : data;
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', buf));
  return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
}

// ---------------------------------------------------------------------------
// Signaling transports

/**
 * One signaling connection (WebSocket or HTTP long-poll). Emits "message"
 * (detail: server object) and "close" (detail: {reason}). Once closed it stays
 * closed; the client makes a new one to reconnect.
 */
export class Signaling extends EventTarget {
  /** @param {{base: string, transport?: 'auto'|'ws'|'http', timeout?: number}} opts */
  constructor(opts) {
    super();
    this.base = opts.base.replace(/\/$/, '');
    this.want = opts.transport || 'auto';
    this.timeout = opts.timeout || 5000;
    /** @type {'ws'|'http'|null} */
    this.transport = null;
    this.closed = false;
    this.ws = null;
    this.sid = null;
    this.abort = new AbortController();
    this.sendChain = Promise.resolve();
    this.lastSeen = Date.now();
  }

  /** Opens the connection; rejects when no transport works. */
  async open() {
    let wsErr = null;
    if (this.want !== 'http') {
      try {
        await this.openWS();
        this.transport = 'ws';
        return;
      } catch (e) {
        wsErr = e;
        if (this.want === 'ws') throw e;
      }
    }
    try {
      await this.openHTTP();
      this.transport = 'http';
    } catch (e) {
      throw wsErr && this.want === 'auto' ? new ParleyError('unreachable', `server unreachable (${e.message})`) : e;
    }
  }

  openWS() {
    return new Promise((resolve, reject) => {
      const url = this.base.replace(/^http/, 'ws') + '/ws';
      let ws;
      try {
        ws = new WebSocket(url);
      } catch (e) {
        reject(e);
        return;
      }
      const timer = setTimeout(() => {
        ws.close();
        reject(new ParleyError('unreachable', 'WebSocket timed out'));
      }, this.timeout);
      ws.onopen = () => {
        clearTimeout(timer);
        this.ws = ws;
        ws.onmessage = (ev) => this.deliver(ev.data);
        ws.onclose = (ev) => this.shut(`websocket closed (${ev.code})`);
        ws.onerror = () => {};
        this.pinger = setInterval(() => {
          if (Date.now() - this.lastSeen > 20000) {
            ws.close();
            this.shut('no answer from server');
            return;
          }
          this.send({ type: 'ping' });
        }, 8000);
        resolve();
      };
      ws.onerror = () => {};
      ws.onclose = () => {
        clearTimeout(timer);
        reject(new ParleyError('unreachable', 'WebSocket connection failed'));
      };
    });
  }

  async openHTTP() {
    const r = await this.fetchT(this.base + '/api/session', { method: 'POST' });
    if (!r.ok) throw new ParleyError('unreachable', `HTTP ${r.status} from /api/session`);
    const j = await r.json();
    this.sid = j.id;
    this.poll();
  }

  /** fetch with the connection's abort signal and a timeout. */
  fetchT(url, init = {}, ms = this.timeout) {
    const ctl = new AbortController();
    const t = setTimeout(() => ctl.abort(), ms);
    const onAbort = () => ctl.abort();
    this.abort.signal.addEventListener('abort', onAbort);
    return fetch(url, { ...init, signal: ctl.signal, cache: 'no-store' }).finally(() => {
      clearTimeout(t);
      this.abort.signal.removeEventListener('abort', onAbort);
    });
  }

  async poll() {
    const url = `${this.base}/api/session/${encodeURIComponent(this.sid)}/events`;
    while (!this.closed) {
      try {
        const r = await this.fetchT(url, {}, 40000);
        if (r.status === 404 || r.status === 410) return this.shut('session expired');
        if (!r.ok) throw new Error(`HTTP ${r.status}`);
        const list = await r.json();
        this.lastSeen = Date.now();
        for (const m of Array.isArray(list) ? list : [list]) this.deliver(m);
      } catch (e) {
        if (!this.closed) this.shut(`poll failed: ${e.message}`);
        return;
      }
    }
  }

  /** @param {string|object} raw */
  deliver(raw) {
    if (this.closed) return;
    this.lastSeen = Date.now();
    let msg = raw;
    if (typeof raw === 'string') {
      try {
        msg = JSON.parse(raw);
      } catch {
        return;
      }
    }
    if (msg && msg.type === 'pong') return;
    emit(this, 'message', msg);
  }

  /** Sends one protocol object. @param {object} msg */
  send(msg) {
    if (this.closed) return;
    if (this.transport === 'ws') {
      if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
      return;
    }
    const url = `${this.base}/api/session/${encodeURIComponent(this.sid)}`;
    this.sendChain = this.sendChain.then(async () => {
      if (this.closed) return;
      try {
        const r = await this.fetchT(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(msg),
        });
        if (r.status === 404 || r.status === 410) return this.shut('session expired');
        if (!r.ok) {
          const body = await r.json().catch(() => null);
          this.deliver(body && body.type ? body : { type: 'error', code: (body && body.code) || 'http-' + r.status, message: (body && body.message) || `HTTP ${r.status}` });
        }
      } catch (e) {
        if (!this.closed) this.shut(`send failed: ${e.message}`);
      }
    });
  }

  /** @param {string} reason */
  shut(reason) {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.pinger);
    emit(this, 'close', { reason });
  }

  /** Closes without a "close" event. */
  close() {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.pinger);
    this.abort.abort();
    if (this.sid) {
      // End the HTTP session now rather than when it idles out.
      fetch(`${this.base}/api/session/${encodeURIComponent(this.sid)}`, { method: 'DELETE', keepalive: true }).catch(() => {});
    }
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close(1000);
    }
  }
}

// ---------------------------------------------------------------------------
// File transfers

/**
 * One file transfer in either direction. Events: "progress", "state".
 * state: 'sending'|'receiving'|'verifying'|'done'|'failed'|'cancelled'.
 */
export class Transfer extends EventTarget {
  constructor(peer, { id, name, size, mime, sha256, direction }) {
    super();
    /** @type {Peer} */
    this.peer = peer;
    this.id = id;
    this.name = name;
    this.size = size;
    this.mime = mime || 'application/octet-stream';
    this.sha256 = sha256 || '';
    /** @type {'in'|'out'} */
    this.direction = direction;
    this.bytes = 0;
    this.state = direction === 'out' ? 'sending' : 'receiving';
    this.error = '';
    this.startedAt = performance.now();
    this.speed = 0; // bytes per second
    this.url = '';
    /** @type {Blob|null} */
    this.blob = null;
    this.chunks = [];
    this.speedMark = { t: this.startedAt, b: 0 };
  }

  get progress() {
    return this.size ? Math.min(1, this.bytes / this.size) : this.state === 'done' ? 1 : 0;
  }

  get active() {
    return this.state === 'sending' || this.state === 'receiving' || this.state === 'verifying';
  }

  /** @param {number} bytes */
  advance(bytes) {
    bytes = Math.min(this.size, Math.max(this.bytes, bytes));
    this.bytes = bytes;
    const now = performance.now();
    const dt = now - this.speedMark.t;
    if (dt >= 500 || bytes === this.size) {
      const inst = ((bytes - this.speedMark.b) * 1000) / Math.max(dt, 1);
      this.speed = this.speed ? this.speed * 0.5 + inst * 0.5 : inst;
      this.speedMark = { t: now, b: bytes };
    }
    emit(this, 'progress', this);
  }

  /** @param {string} state @param {string} [error] */
  setState(state, error = '') {
    if (!this.active) return;
    this.state = state;
    this.error = error;
    if (state === 'done' || state === 'failed' || state === 'cancelled') this.chunks = [];
    emit(this, 'state', this);
  }

  /** Stops the transfer on both sides. */
  cancel() {
    if (!this.active) return;
    this.peer.sendFileCtl({ t: 'file-cancel', id: this.id, dir: this.direction });
    this.setState('cancelled', 'cancelled by you');
  }
}

// ---------------------------------------------------------------------------
// Peer

const CHANNELS = /** @type {const} */ ({ control: 0, chat: 1, file: 2 });

/**
 * One remote member: its RTCPeerConnection, data channels and state.
 * Events: "track", "state" (connection/mute/name change), "control", "chat".
 */
export class Peer extends EventTarget {
  /** @param {Client} client @param {MemberInfo} info @param {boolean} offerer */
  constructor(client, info, offerer) {
    super();
    this.client = client;
    this.id = info.id;
    this.name = info.name || 'Guest';
    this.identity = info.identity || '';
    this.verified = !!info.verified;
    this.host = !!info.host;
    this.polite = client.id > info.id; // lexically larger id yields in glare
    this.offerer = offerer;
    this.remoteStream = new MediaStream();
    /** Remote media state as announced by the peer. */
    this.media = { audio: true, video: true, screen: false };
    this.relay = client.opts.iceTransportPolicy === 'relay';
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.answerPending = false;
    this.collisions = 0; // offers that crossed ours (resolved by perfect negotiation)
    this.waitingForOffer = !offerer;
    this.queue = Promise.resolve();
    /** @type {Map<number, Transfer>} */
    this.transfers = new Map();
    this.closed = false;
    this.connectedAt = 0;
    this.createdAt = performance.now();
    this.prevStats = null;
    this.buildPC();
  }

  buildPC() {
    const c = this.client;
    const pc = new RTCPeerConnection({
      iceServers: c.iceServers,
      iceTransportPolicy: this.relay ? 'relay' : 'all',
      bundlePolicy: 'max-bundle',
    });
    this.pc = pc;
    this.audioTx = null;
    this.videoTx = null;
    this.remoteStream = new MediaStream();
    /** @type {Record<string, RTCDataChannel>} */
    this.channels = {};
    for (const [label, id] of Object.entries(CHANNELS)) {
      const ch = pc.createDataChannel(label, { negotiated: true, id, ordered: true });
      ch.binaryType = 'arraybuffer';
      this.channels[label] = ch;
      ch.onmessage = (ev) => this.onChannelMessage(label, ev.data);
      ch.onopen = () => {
        if (label === 'control') this.sendControl({ t: 'hello', name: c.name, ...c.mediaState });
        emit(this, 'state', this);
      };
      ch.onclose = () => {
        if (label === 'file') for (const tr of this.transfers.values()) tr.setState('failed', 'connection closed');
      };
    }
    this.channels.file.bufferedAmountLowThreshold = BUFFER_LOW;
    if (this.offerer) this.addTransceivers();

    pc.onnegotiationneeded = async () => {
      if (this.waitingForOffer || this.closed) return;
      try {
        this.makingOffer = true;
        await pc.setLocalDescription();
        this.signal({ description: pc.localDescription });
      } catch (e) {
        c.log('offer failed', e);
      } finally {
        this.makingOffer = false;
      }
    };
    pc.onicecandidate = ({ candidate }) => {
      if (candidate) this.signal({ candidate: candidate.toJSON() });
    };
    pc.ontrack = ({ track }) => {
      this.remoteStream.addTrack(track);
      track.addEventListener('ended', () => this.remoteStream.removeTrack(track));
      emit(this, 'track', { peer: this, track, stream: this.remoteStream });
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'connected') this.stuck = false;
      if (pc.connectionState === 'connected' && !this.connectedAt) {
        this.connectedAt = performance.now();
        this.applyBitrate();
      }
      if (pc.connectionState === 'failed') {
        // One automatic ICE restart, then let the user choose "retry through relay".
        if (!this.restarted) {
          this.restarted = true;
          pc.restartIce();
        }
      }
      emit(this, 'state', this);
    };
    pc.onsignalingstatechange = () => {
      if (pc.signalingState === 'stable') this.applyBitrate();
    };
    // Some failures never reach 'failed' (e.g. relay-only with no usable TURN:
    // no candidates at all), so a connection that is not up in time counts as failed.
    this.stuck = false;
    clearTimeout(this.stuckTimer);
    this.stuckTimer = setTimeout(() => {
      if (this.closed || this.pc !== pc || pc.connectionState === 'connected') return;
      this.stuck = true;
      emit(this, 'state', this);
    }, c.opts.connectTimeout || 12000);
    if (this.waitingForOffer) {
      // The existing member offers; if nothing comes, offer ourselves.
      this.offerTimer = setTimeout(() => {
        if (!this.waitingForOffer || this.closed) return;
        this.waitingForOffer = false;
        this.addTransceivers();
      }, 4000);
    }
  }

  /**
   * 'new'|'connecting'|'connected'|'disconnected'|'failed'|'closed'; also
   * 'failed' when the connection did not come up within connectTimeout.
   */
  get connectionState() {
    const s = this.pc.connectionState;
    return this.stuck && s !== 'connected' && s !== 'closed' ? 'failed' : s;
  }

  addTransceivers() {
    const s = this.client.localStream;
    const a = s && s.getAudioTracks()[0];
    const v = s && s.getVideoTracks()[0];
    const streams = s ? [s] : [];
    if (!this.audioTx) this.audioTx = this.pc.addTransceiver(a || 'audio', { direction: 'sendrecv', streams });
    if (!this.videoTx) this.videoTx = this.pc.addTransceiver(v || 'video', { direction: 'sendrecv', streams });
  }

  /** After a remote offer, adopt the transceivers it created and send our media on them. */
  adoptTransceivers() {
    const s = this.client.localStream;
    for (const t of this.pc.getTransceivers()) {
      if (t.stopped || t.currentDirection === 'stopped') continue;
      const kind = t.receiver.track.kind;
      const slot = kind === 'audio' ? 'audioTx' : 'videoTx';
      if (this[slot] && this[slot] !== t) continue;
      if (!this[slot]) {
        this[slot] = t;
        const track = s && (kind === 'audio' ? s.getAudioTracks()[0] : s.getVideoTracks()[0]);
        t.sender.replaceTrack(track || null).catch(() => {});
        if (s) t.sender.setStreams(s);
      }
      if (t.direction !== 'sendrecv') t.direction = 'sendrecv';
    }
  }

  /** @param {object} data */
  signal(data) {
    this.client.sig && this.client.sig.send({ type: 'signal', to: this.id, data });
  }

  /** Handles a signaling payload from this peer (serialized). @param {any} data */
  handleSignal(data) {
    this.queue = this.queue.then(() => this.onSignal(data)).catch((e) => this.client.log('signal error', e));
    return this.queue;
  }

  async onSignal(data) {
    if (this.closed || !data) return;
    const pc = this.pc;
    const { description, candidate } = data;
    if (description) {
      const ready = !this.makingOffer && (pc.signalingState === 'stable' || this.answerPending);
      const collision = description.type === 'offer' && !ready;
      if (collision) this.collisions++;
      this.ignoreOffer = !this.polite && collision;
      if (this.ignoreOffer) return;
      this.answerPending = description.type === 'answer';
      await pc.setRemoteDescription(description);
      this.answerPending = false;
      if (description.type === 'offer') {
        this.adoptTransceivers();
        this.waitingForOffer = false;
        clearTimeout(this.offerTimer);
        await pc.setLocalDescription();
        this.signal({ description: pc.localDescription });
      }
    } else if (candidate) {
      try {
        await pc.addIceCandidate(candidate);
      } catch (e) {
        if (!this.ignoreOffer) this.client.log('addIceCandidate', e);
      }
    } else if (data.restart) {
      // The other side rebuilt its connection (e.g. retry through relay).
      this.rebuild(!!data.relay, false);
    }
  }

  /**
   * Tears down and recreates the peer connection, optionally relay-only
   * (iceTransportPolicy 'relay'). Tells the other side to do the same.
   * @param {boolean} relay @param {boolean} [tell]
   */
  rebuild(relay, tell = true) {
    for (const tr of this.transfers.values()) tr.setState('failed', 'connection restarted');
    this.closePC();
    this.relay = relay;
    this.restarted = false;
    this.connectedAt = 0;
    this.offerer = tell;
    this.waitingForOffer = !tell;
    this.ignoreOffer = false;
    this.makingOffer = false;
    this.queue = Promise.resolve();
    if (tell) this.signal({ restart: true, relay });
    this.buildPC();
    emit(this, 'state', this);
  }

  /** Retries the connection through the TURN relay only. */
  retryRelay() {
    this.rebuild(true, true);
  }

  closePC() {
    clearTimeout(this.offerTimer);
    clearTimeout(this.stuckTimer);
    if (!this.pc) return;
    this.pc.onnegotiationneeded = this.pc.onicecandidate = this.pc.ontrack = null;
    this.pc.onconnectionstatechange = this.pc.onsignalingstatechange = null;
    for (const ch of Object.values(this.channels)) ch.onmessage = ch.onopen = ch.onclose = null;
    for (const t of this.remoteStream.getTracks()) this.remoteStream.removeTrack(t);
    this.pc.close();
  }

  close() {
    if (this.closed) return;
    for (const tr of this.transfers.values()) tr.setState('failed', 'peer left');
    this.closed = true;
    this.closePC();
  }

  /** @param {'audio'|'video'} kind @param {MediaStreamTrack|null} track */
  async replaceTrack(kind, track) {
    const tx = kind === 'audio' ? this.audioTx : this.videoTx;
    if (tx && !tx.stopped) await tx.sender.replaceTrack(track);
  }

  async applyBitrate() {
    const tx = this.videoTx;
    if (!tx || this.pc.signalingState !== 'stable') return;
    try {
      const p = tx.sender.getParameters();
      if (!p.encodings || !p.encodings.length) return;
      const want = this.client.maxBitrate || 0;
      const have = p.encodings[0].maxBitrate || 0;
      if (want === have) return;
      if (want) p.encodings[0].maxBitrate = want;
      else delete p.encodings[0].maxBitrate;
      await tx.sender.setParameters(p);
    } catch (e) {
      this.client.log('setParameters', e);
    }
  }

  // --- data channel messages

  /** @param {object} msg */
  sendControl(msg) {
    const ch = this.channels.control;
    if (ch && ch.readyState === 'open') ch.send(JSON.stringify(msg));
  }

  /** @param {object} msg */
  sendFileCtl(msg) {
    const ch = this.channels.file;
    if (ch && ch.readyState === 'open') ch.send(JSON.stringify(msg));
  }

  /** @param {string} label @param {string|ArrayBuffer} data */
  onChannelMessage(label, data) {
    if (label === 'file') return this.onFileMessage(data);
    let msg;
    try {
      msg = JSON.parse(/** @type {string} */ (data));
    } catch {
      return;
    }
    if (label === 'chat') {
      if (msg.t === 'chat' && typeof msg.text === 'string') {
        emit(this.client, 'chat', { peer: this, from: this.id, name: this.name, text: msg.text.slice(0, 4000), ts: Date.now(), sentAt: msg.ts, self: false });
      }
      return;
    }
    switch (msg.t) {
      case 'hello':
        // A verified member's name is the server's, not what the peer says.
        if (!this.verified && typeof msg.name === 'string' && msg.name) this.name = msg.name.slice(0, 64);
      // fall through
      case 'state':
        this.media = { audio: msg.audio !== false, video: msg.video !== false, screen: !!msg.screen };
        emit(this, 'state', this);
        emit(this.client, 'peer-state', this);
        break;
      case 'bye':
        this.client.dropPeer(this.id, 'bye');
        break;
      default:
        emit(this.client, 'control', { peer: this, message: msg });
    }
  }

  // --- files

  /** @param {File|Blob} file @returns {Promise<Transfer>} */
  async sendFile(file, name = /** @type {File} */ (file).name || 'file') {
    const buf = await file.arrayBuffer();
    const sha = await sha256Hex(buf);
    let id;
    do id = (Math.random() * 0xffffffff) >>> 0;
    while (this.transfers.has(id));
    const tr = new Transfer(this, { id, name, size: buf.byteLength, mime: file.type, sha256: sha, direction: 'out' });
    this.transfers.set(id, tr);
    emit(this.client, 'transfer', tr);
    this.pump(tr, buf);
    return tr;
  }

  /** @param {Transfer} tr @param {ArrayBuffer} buf */
  async pump(tr, buf) {
    const ch = this.channels.file;
    if (ch.readyState !== 'open') {
      tr.setState('failed', 'no connection to this member');
      return;
    }
    this.sendFileCtl({ t: 'file-offer', id: tr.id, name: tr.name, size: tr.size, mime: tr.mime, sha256: tr.sha256 });
    let index = 0;
    for (let off = 0; off < buf.byteLength; off += CHUNK_SIZE) {
      while (ch.bufferedAmount > BUFFER_HIGH && tr.active && ch.readyState === 'open') {
        await new Promise((r) => {
          const done = () => {
            ch.removeEventListener('bufferedamountlow', done);
            clearTimeout(t);
            r();
          };
          const t = setTimeout(done, 1000);
          ch.addEventListener('bufferedamountlow', done);
        });
        tr.advance(Math.max(0, off - ch.bufferedAmount));
      }
      if (!tr.active) return;
      if (ch.readyState !== 'open') return tr.setState('failed', 'connection closed');
      const end = Math.min(off + CHUNK_SIZE, buf.byteLength);
      const msg = new Uint8Array(CHUNK_HEADER + end - off);
      const dv = new DataView(msg.buffer);
      dv.setUint32(0, tr.id);
      dv.setUint32(4, index++);
      msg.set(new Uint8Array(buf, off, end - off), CHUNK_HEADER);
      ch.send(msg);
      tr.advance(Math.max(0, end - ch.bufferedAmount));
    }
    // Keep reporting until the buffer drains; the receiver's ack finishes it.
    while (tr.active && ch.readyState === 'open' && ch.bufferedAmount > 0) {
      await sleep(50);
      tr.advance(Math.max(0, tr.size - ch.bufferedAmount));
    }
    if (tr.active) {
      tr.advance(tr.size);
      tr.setState('verifying');
    }
  }

  /** @param {string|ArrayBuffer} data */
  onFileMessage(data) {
    if (typeof data !== 'string') {
      if (data.byteLength < CHUNK_HEADER) return;
      const dv = new DataView(data);
      const tr = this.transfers.get(dv.getUint32(0));
      if (!tr || tr.direction !== 'in' || tr.state !== 'receiving') return;
      const index = dv.getUint32(4);
      if (index !== tr.chunks.length) {
        this.sendFileCtl({ t: 'file-cancel', id: tr.id, dir: 'in', reason: 'chunk out of order' });
        return tr.setState('failed', 'chunk out of order');
      }
      tr.chunks.push(data.slice(CHUNK_HEADER));
      const bytes = tr.bytes + data.byteLength - CHUNK_HEADER;
      if (bytes > tr.size) {
        this.sendFileCtl({ t: 'file-cancel', id: tr.id, dir: 'in', reason: 'too much data' });
        return tr.setState('failed', 'more data than announced');
      }
      tr.advance(bytes);
      if (bytes === tr.size) this.finishIncoming(tr);
      return;
    }
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    const tr = this.transfers.get(msg.id);
    switch (msg.t) {
      case 'file-offer': {
        if (tr || typeof msg.id !== 'number') return;
        const size = Number(msg.size) || 0;
        const name = String(msg.name || 'file').replace(/[\\/\x00-\x1f]/g, '_').slice(0, 200);
        const t = new Transfer(this, { id: msg.id, name, size, mime: String(msg.mime || ''), sha256: String(msg.sha256 || ''), direction: 'in' });
        this.transfers.set(t.id, t);
        emit(this.client, 'transfer', t);
        if (size > this.client.maxFileSize) {
          this.sendFileCtl({ t: 'file-cancel', id: t.id, dir: 'in', reason: 'too large' });
          t.setState('failed', `larger than the ${formatBytes(this.client.maxFileSize)} limit`);
        } else if (size === 0) this.finishIncoming(t);
        break;
      }
      case 'file-cancel':
        if (tr) tr.setState(msg.reason ? 'failed' : 'cancelled', msg.reason ? `refused: ${msg.reason}` : `cancelled by ${this.name}`);
        break;
      case 'file-ack':
        if (tr && tr.direction === 'out') {
          tr.advance(tr.size);
          if (msg.ok) tr.setState('done');
          else tr.setState('failed', 'checksum mismatch at the receiver');
        }
        break;
    }
  }

  /** @param {Transfer} tr */
  async finishIncoming(tr) {
    tr.setState('verifying');
    const blob = new Blob(tr.chunks, { type: tr.mime });
    tr.chunks = [];
    const got = await sha256Hex(blob);
    const ok = !tr.sha256 || got === tr.sha256;
    this.sendFileCtl({ t: 'file-ack', id: tr.id, ok, sha256: got });
    if (!ok) return tr.setState('failed', 'checksum mismatch');
    tr.blob = blob;
    tr.received256 = got;
    tr.url = URL.createObjectURL(blob);
    tr.setState('done');
  }

  // --- stats

  /**
   * Samples getStats and returns rates since the previous sample.
   * @returns {Promise<PeerStats>}
   */
  async sample() {
    return this.summarize(await this.pc.getStats(), () => true);
  }

  /**
   * Turns a stats report into rates since the previous call; mine(stat)
   * says whether an inbound stream belongs to this member.
   * @param {RTCStatsReport} report @param {(s: any) => boolean} mine
   * @returns {PeerStats}
   */
  summarize(report, mine) {
    const now = performance.now();
    const prev = this.prevStats;
    /** @type {PeerStats} */
    const out = { ts: now, in: {}, out: {}, rtt: null, candidate: null, relay: this.relay };
    const byId = new Map();
    report.forEach((s) => byId.set(s.id, s));
    const rate = (key, id, v) => {
      const p = prev && prev.raw.get(key + id);
      if (!p) return 0;
      const dt = (now - prev.ts) / 1000;
      return dt > 0 ? Math.max(0, (v - p) / dt) : 0;
    };
    const raw = new Map();
    let pair = null;
    report.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId);
    });
    report.forEach((s) => {
      if (!pair && s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s;
      if (s.type !== 'inbound-rtp' && s.type !== 'outbound-rtp') return;
      if (s.type === 'inbound-rtp' && !mine(s)) return;
      const dir = s.type === 'inbound-rtp' ? 'in' : 'out';
      const bytes = dir === 'in' ? s.bytesReceived : s.bytesSent;
      const packets = dir === 'in' ? s.packetsReceived : s.packetsSent;
      raw.set('b' + s.id, bytes || 0);
      raw.set('p' + s.id, packets || 0);
      const codec = s.codecId && byId.get(s.codecId);
      const remoteIn = dir === 'out' && s.remoteId ? byId.get(s.remoteId) : null;
      const lost = dir === 'in' ? s.packetsLost || 0 : remoteIn ? remoteIn.packetsLost || 0 : 0;
      const total = (packets || 0) + lost;
      const entry = {
        kbps: (rate('b', s.id, bytes || 0) * 8) / 1000,
        pps: rate('p', s.id, packets || 0),
        bytes: bytes || 0,
        packets: packets || 0,
        lost,
        lossPct: total ? (100 * lost) / total : 0,
        jitter: dir === 'in' ? s.jitter || 0 : remoteIn ? remoteIn.jitter || 0 : 0,
        codec: codec ? codec.mimeType.split('/')[1] : '',
        width: s.frameWidth || 0,
        height: s.frameHeight || 0,
        fps: s.framesPerSecond || 0,
        framesDecoded: s.framesDecoded || 0,
        framesEncoded: s.framesEncoded || 0,
        audioLevel: s.audioLevel || 0,
        totalSamplesReceived: s.totalSamplesReceived || 0,
      };
      const slot = out[dir];
      const had = slot[s.kind];
      if (!had) slot[s.kind] = entry;
      else if (dir === 'out') slot[s.kind] = addLayer(had, entry);
      // Several inbound streams of a kind: the one receiving most now.
      else if (entry.kbps > had.kbps || (entry.kbps === had.kbps && entry.bytes > had.bytes)) slot[s.kind] = entry;
    });
    if (pair) {
      const l = byId.get(pair.localCandidateId);
      const r = byId.get(pair.remoteCandidateId);
      out.rtt = pair.currentRoundTripTime != null ? pair.currentRoundTripTime * 1000 : null;
      out.candidate = {
        local: l ? l.candidateType : '',
        remote: r ? r.candidateType : '',
        protocol: l ? l.relayProtocol || l.protocol : '',
        address: r ? `${r.address || r.ip}:${r.port}` : '',
      };
    }
    this.prevStats = { ts: now, raw };
    return out;
  }
}

/**
 * Several outbound streams of a kind are simulcast layers: what goes out is
 * their sum, and its picture is the largest layer sending now (a layer the
 * bitrate cap turned off sends nothing, whatever it sent before).
 * @param {StreamStats} a @param {StreamStats} b @returns {StreamStats}
 */
function addLayer(a, b) {
  const pic = (x) => (x.kbps > 0 ? x.width * x.height + 1 : 0);
  const top = pic(b) > pic(a) ? b : a;
  const lost = a.lost + b.lost, packets = a.packets + b.packets;
  return { ...top, kbps: a.kbps + b.kbps, pps: a.pps + b.pps, bytes: a.bytes + b.bytes, packets, lost,
    lossPct: lost + packets ? (100 * lost) / (lost + packets) : 0 };
}

/**
 * @typedef {{kbps:number,pps:number,bytes:number,packets:number,lost:number,lossPct:number,jitter:number,
 *   codec:string,width:number,height:number,fps:number,framesDecoded:number,framesEncoded:number,
 *   audioLevel:number,totalSamplesReceived:number}} StreamStats
 * @typedef {{ts:number, in:{audio?:StreamStats, video?:StreamStats}, out:{audio?:StreamStats, video?:StreamStats},
 *   rtt:number|null, candidate:{local:string,remote:string,protocol:string,address:string}|null, relay:boolean}} PeerStats
 */

/** @param {number} n */
export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

// ---------------------------------------------------------------------------
// SFU rooms: one connection to the server, members' media and data through it

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

/** Simulcast layers sent in sfu rooms (rids the server knows: q/h/f). */
export const SIMULCAST = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500000 },
  { rid: 'f', maxBitrate: 2500000 },
];

/**
 * The member's single RTCPeerConnection to the server in an "sfu" room.
 * The server offers when others' tracks come and go; we offer when ours
 * change. We are the polite side. Data for other members goes through the
 * server-relayed channel "parley".
 */
export class SfuLink {
  /** @param {Client} client */
  constructor(client) {
    this.client = client;
    this.relay = client.opts.iceTransportPolicy === 'relay';
    /** @type {Map<string, string>} stream or track id → publisher member id */
    this.owner = new Map();
    /** @type {{track: MediaStreamTrack, stream: string}[]} tracks whose publisher is not known yet */
    this.pending = [];
    /** @type {any[]} the server's last "tracks" list */
    this.tracks = [];
    /** @type {Map<string, {quality: 'low'|'medium'|'high', paused: boolean}>} by member */
    this.prefs = new Map();
    /** @type {Map<string, string>} what was last asked per server track id */
    this.sentPrefs = new Map();
    this.queue = Promise.resolve();
    this.makingOffer = false;
    this.collisions = 0;
    this.generation = 0; // counts remote offers, to drop offers made stale by one
    this.reoffer = false;
    this.stuck = false;
    this.closed = false;
    this.build();
  }

  build() {
    const c = this.client;
    const pc = new RTCPeerConnection({ iceServers: c.iceServers, iceTransportPolicy: this.relay ? 'relay' : 'all', bundlePolicy: 'max-bundle' });
    this.pc = pc;
    const s = c.localStream;
    const streams = s ? [s] : [];
    /** @type {RTCRtpTransceiver|null} */
    this.audioTx = null;
    /** @type {RTCRtpTransceiver|null} */
    this.videoTx = null;
    // Without the publish grant the server would refuse sending sections:
    // offer none (we still receive on the server's).
    if (c.grants.publish) {
      this.audioTx = pc.addTransceiver((s && s.getAudioTracks()[0]) || 'audio', { direction: 'sendonly', streams });
      /** @type {RTCRtpTransceiverInit} */
      const vinit = { direction: 'sendonly', streams };
      // Three simulcast layers (the server forwards each member the one that fits its tile).
      if (c.opts.simulcast !== false) vinit.sendEncodings = SIMULCAST.map((e) => ({ ...e }));
      this.videoTx = pc.addTransceiver((s && s.getVideoTracks()[0]) || 'video', vinit);
    }
    const dc = pc.createDataChannel('parley', { negotiated: true, id: 0, ordered: true });
    dc.binaryType = 'arraybuffer';
    dc.bufferedAmountLowThreshold = BUFFER_LOW;
    dc.onmessage = (ev) => this.onData(ev.data);
    dc.onopen = () => {
      for (const p of c.peers.values()) {
        p.sendControl({ t: 'hello', name: c.name, ...c.mediaState });
        emit(p, 'state', p);
      }
    };
    this.dc = dc;
    pc.onnegotiationneeded = () => this.offer();
    pc.onicecandidate = ({ candidate }) => {
      if (candidate) this.send({ candidate: candidate.toJSON() });
    };
    pc.ontrack = ({ track, streams: ss }) => this.place(track, ss[0] ? ss[0].id : '');
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'connected') {
        this.stuck = false;
        this.applyBitrate();
      }
      if (pc.connectionState === 'failed' && !this.restarted) {
        this.restarted = true;
        pc.restartIce();
      }
      this.touchPeers();
    };
    pc.onsignalingstatechange = () => {
      if (pc.signalingState !== 'stable') return;
      this.applyBitrate();
      if (this.reoffer) {
        this.reoffer = false;
        this.offer();
      }
    };
    this.stuckTimer = setTimeout(() => {
      if (this.closed || pc.connectionState === 'connected') return;
      this.stuck = true;
      this.touchPeers();
    }, c.opts.connectTimeout || 12000);
  }

  touchPeers() {
    for (const p of this.client.peers.values()) emit(p, 'state', p);
  }

  get connectionState() {
    const st = this.pc.connectionState;
    return this.stuck && st !== 'connected' && st !== 'closed' ? 'failed' : st;
  }

  /** @param {object} data */
  send(data) {
    if (this.client.sig) this.client.sig.send({ type: 'media', data });
  }

  async offer() {
    if (this.closed) return;
    try {
      this.makingOffer = true;
      const pc = this.pc;
      const gen = this.generation;
      const o = await pc.createOffer();
      if (pc.signalingState !== 'stable' || gen !== this.generation) {
        this.reoffer = true; // the server's offer came in between; offer again when stable
        return;
      }
      await pc.setLocalDescription({ type: 'offer', sdp: uniqueExtmapIds(o.sdp) });
      this.send({ sdp: await deflateSdp(pc.localDescription) });
    } catch (e) {
      this.client.log('sfu offer', e);
    } finally {
      this.makingOffer = false;
    }
  }

  /** Handles a "media" message from the server (serialized). @param {any} d */
  onMedia(d) {
    this.queue = this.queue.then(() => this.handle(d)).catch((e) => this.client.log('sfu media', e));
  }

  async handle(d) {
    if (this.closed || !d) return;
    const pc = this.pc;
    if (d.sdp && d.sdp.type === 'offer') {
      // Polite: a crossing offer of ours is rolled back and sent again later.
      if (this.makingOffer || pc.signalingState !== 'stable') {
        this.collisions++;
        this.reoffer = true;
      }
      this.generation++;
      const first = !pc.currentLocalDescription;
      await pc.setRemoteDescription(await inflateSdp(d.sdp));
      const answer = await pc.createAnswer();
      // When the server offers first, take the DTLS server role (passive):
      // then the server's answers to our later offers (active, its default)
      // agree with the roles already in place.
      if (first) answer.sdp = answer.sdp.replace(/a=setup:active/g, 'a=setup:passive');
      await pc.setLocalDescription(answer);
      this.send({ sdp: await deflateSdp(pc.localDescription) });
    } else if (d.sdp && d.sdp.type === 'answer') {
      if (pc.signalingState === 'have-local-offer') await pc.setRemoteDescription(await inflateSdp(d.sdp));
    } else if (d.candidate) {
      await pc.addIceCandidate(d.candidate).catch((e) => this.client.log('sfu candidate', e));
    } else if (d.error) {
      if (d.error.code === 'glare') {
        this.reoffer = true;
        if (pc.signalingState === 'stable' && !this.makingOffer) {
          this.reoffer = false;
          this.offer();
        }
      } else if (d.error.code === 'media-closed') {
        // An offer of the connection the server closed crossed its
        // "media-closed" message, which has already made a new link.
        this.client.log('sfu offer of a closed link', d.error.message);
      } else emit(this.client, 'error', { code: d.error.code, message: d.error.message || d.error.code, fatal: false });
    }
  }

  /** The server's list of published tracks. @param {any[]} list */
  onTracks(list) {
    this.tracks = Array.isArray(list) ? list : [];
    for (const t of this.tracks) {
      if (t.stream_id) this.owner.set(t.stream_id, t.publisher);
      if (t.track_id) this.owner.set(t.track_id, t.publisher);
    }
    this.flush();
    for (const [id, p] of this.prefs) this.prefer(id, p.quality, p.paused);
  }

  /**
   * Asks the server for one member's video at a simulcast layer that fits
   * its tile ('low' | 'medium' | 'high'), or pauses it (an off-screen tile).
   * Kept and re-applied when the member's tracks change.
   * @param {string} member @param {'low'|'medium'|'high'} quality @param {boolean} paused
   */
  prefer(member, quality, paused) {
    this.prefs.set(member, { quality, paused });
    for (const t of this.tracks) {
      if (t.publisher !== member || t.kind !== 'video') continue;
      const key = `${quality}/${paused}`;
      if (this.sentPrefs.get(t.id) === key) continue;
      this.sentPrefs.set(t.id, key);
      this.send({ subscribe: { track: t.id, quality, paused } });
    }
  }

  /** Puts a received track on its publisher's stream. @param {MediaStreamTrack} track @param {string} stream */
  place(track, stream) {
    const who = this.owner.get(stream) || this.owner.get(track.id);
    const p = who && this.client.peers.get(who);
    if (!p) {
      this.pending.push({ track, stream });
      return;
    }
    // The server reuses the receiving section of an ended track for a new
    // one, so the same track object can come back for another member.
    for (const other of this.client.peers.values()) {
      if (other !== p && other.remoteStream && other.remoteStream.getTracks().includes(track)) other.remoteStream.removeTrack(track);
    }
    const rs = p.remoteStream;
    for (const old of rs.getTracks()) if (old.kind === track.kind && old !== track && old.readyState === 'ended') rs.removeTrack(old);
    rs.addTrack(track);
    track.addEventListener('ended', () => rs.removeTrack(track));
    emit(p, 'track', { peer: p, track, stream: rs });
  }

  flush() {
    const pending = this.pending;
    this.pending = [];
    for (const x of pending) if (x.track.readyState !== 'ended') this.place(x.track, x.stream);
  }

  /** @param {string|ArrayBuffer} data */
  onData(data) {
    if (typeof data === 'string') {
      let o;
      try {
        o = JSON.parse(data);
      } catch {
        return;
      }
      if (o && o.type === 'relay-error') {
        // The server did not relay one of our messages: without the publish
        // grant, say so (once a message); a slow receiver is only logged.
        if (o.code === 'forbidden') emit(this.client, 'error', { code: o.code, message: o.message || 'message not relayed', fatal: false });
        else this.client.log('relay error', o.code, o.message);
        return;
      }
      const p = o && this.client.peers.get(o.from);
      if (p) p.onChannelMessage(o.ch === 'chat' || o.ch === 'file' ? o.ch : 'control', data);
      return;
    }
    if (data.byteLength < 16) return;
    const p = this.client.peers.get(textDecoder.decode(new Uint8Array(data, 0, 16)));
    if (p) p.onFileMessage(data.slice(16));
  }

  /** A channel-like object that reaches one member through the relay. @param {Peer} peer @param {string} label */
  channelTo(peer, label) {
    const link = this;
    return {
      label,
      get readyState() {
        return link.dc.readyState;
      },
      get bufferedAmount() {
        return link.dc.bufferedAmount;
      },
      bufferedAmountLowThreshold: BUFFER_LOW,
      /** @param {string|Uint8Array} data */
      send(data) {
        if (!link.client.grants.publish) return; // the server would refuse it (see Client.maySend)
        if (typeof data === 'string') {
          const o = JSON.parse(data);
          o.ch = label;
          o.to = peer.id;
          link.dc.send(JSON.stringify(o));
          return;
        }
        const m = new Uint8Array(16 + data.byteLength);
        m.set(textEncoder.encode(peer.id.padEnd(16, '*').slice(0, 16)));
        m.set(data, 16);
        link.dc.send(m);
      },
      addEventListener: (t, f) => link.dc.addEventListener(t, f),
      removeEventListener: (t, f) => link.dc.removeEventListener(t, f),
    };
  }

  /** @param {'audio'|'video'} kind @param {MediaStreamTrack|null} track */
  async replaceTrack(kind, track) {
    const tx = kind === 'audio' ? this.audioTx : this.videoTx;
    if (tx) await tx.sender.replaceTrack(track);
  }

  async applyBitrate() {
    const tx = this.videoTx;
    if (!tx || this.pc.signalingState !== 'stable') return;
    try {
      const p = tx.sender.getParameters();
      if (!p.encodings || !p.encodings.length) return;
      const want = this.client.maxBitrate || 0;
      if (p.encodings.length > 1) {
        // Simulcast: the cap bounds what all layers send together; layers
        // that would get too little are switched off, lowest kept.
        let left = want || Infinity;
        let changed = false;
        p.encodings.forEach((e, i) => {
          const def = (SIMULCAST.find((x) => x.rid === e.rid) || SIMULCAST[i] || SIMULCAST[0]).maxBitrate;
          const rate = Math.min(def, left);
          const active = i === 0 || rate >= def / 4;
          const max = Math.round(Math.max(rate, 30000));
          if (e.maxBitrate !== max || e.active !== active) changed = true;
          e.maxBitrate = max;
          e.active = active;
          if (active) left = Math.max(0, left - rate);
        });
        if (changed) await tx.sender.setParameters(p);
        return;
      }
      if ((p.encodings[0].maxBitrate || 0) === want) return;
      if (want) p.encodings[0].maxBitrate = want;
      else delete p.encodings[0].maxBitrate;
      await tx.sender.setParameters(p);
    } catch (e) {
      this.client.log('setParameters', e);
    }
  }

  /** Switches to relay-only ICE with an ICE restart (the server keeps our session). */
  retryRelay() {
    this.relay = true;
    this.stuck = false;
    this.restarted = false;
    const cfg = this.pc.getConfiguration();
    this.pc.setConfiguration({ ...cfg, iceTransportPolicy: 'relay' });
    this.pc.restartIce();
    for (const p of this.client.peers.values()) p.relay = true;
    this.touchPeers();
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.stuckTimer);
    this.pc.onnegotiationneeded = this.pc.onicecandidate = this.pc.ontrack = null;
    this.pc.onconnectionstatechange = this.pc.onsignalingstatechange = null;
    this.dc.onmessage = this.dc.onopen = null;
    this.pc.close();
  }
}

/** Largest SDP text accepted from the server's compact form. */
const SDP_MAX = 1 << 20;

/** Whether the browser has raw DEFLATE streams (the compact SDP form). */
const canDeflate = (() => {
  try {
    return typeof DecompressionStream === 'function' && !!new CompressionStream('deflate-raw');
  } catch {
    return false;
  }
})();

/**
 * A session description for a "media" message: in the compact form (base64
 * of raw DEFLATE) where the browser can make it; the server then answers in
 * the same form. @param {RTCSessionDescription | RTCSessionDescriptionInit} desc
 */
export async function deflateSdp(desc) {
  if (!canDeflate || !desc.sdp) return { type: desc.type, sdp: desc.sdp };
  const z = new Blob([desc.sdp]).stream().pipeThrough(new CompressionStream('deflate-raw'));
  const bytes = new Uint8Array(await new Response(z).arrayBuffer());
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return { type: desc.type, deflate: btoa(bin) };
}

/**
 * The plain session description of a "media" message's sdp object,
 * inflating the compact form (at most SDP_MAX bytes).
 * @param {{type: RTCSdpType, sdp?: string, deflate?: string}} d
 * @returns {Promise<RTCSessionDescriptionInit>}
 */
export async function inflateSdp(d) {
  if (!d.deflate) return { type: d.type, sdp: d.sdp };
  const raw = Uint8Array.from(atob(d.deflate), (c) => c.charCodeAt(0));
  const reader = new Blob([raw]).stream().pipeThrough(new DecompressionStream('deflate-raw')).getReader();
  const chunks = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.length;
    if (n > SDP_MAX) {
      await reader.cancel();
      throw new Error(`sdp inflates past ${SDP_MAX} bytes`);
    }
    chunks.push(value);
  }
  return { type: d.type, sdp: await new Blob(chunks).text() };
}

/**
 * Chromium may give a header extension id that the server's m-sections
 * already use for another extension to the m-sections it adds after the
 * server offered first; in a BUNDLE group that is rejected. Keep the first
 * meaning of each id and drop the clashing lines (those extensions are then
 * simply not used).
 * @param {string} sdp
 */
export function uniqueExtmapIds(sdp) {
  /** @type {Map<string, string>} */
  const seen = new Map();
  return sdp.split('\r\n').filter((line) => {
    const m = /^a=extmap:(\d+)(?:\/\w+)? (\S+)/.exec(line);
    if (!m) return true;
    const uri = seen.get(m[1]);
    if (uri === undefined) {
      seen.set(m[1], m[2]);
      return true;
    }
    return uri === m[2];
  }).join('\r\n');
}

/** A member of an "sfu" room: media and data reach it through the SfuLink. */
export class SfuPeer extends Peer {
  /** @param {Client} client @param {MemberInfo} info */
  constructor(client, info) {
    super(client, info, false);
  }

  buildPC() {
    const link = /** @type {SfuLink} */ (this.client.link);
    this.link = link;
    this.relay = link.relay;
    this.remoteStream = this.remoteStream || new MediaStream();
    this.channels = { control: link.channelTo(this, 'control'), chat: link.channelTo(this, 'chat'), file: link.channelTo(this, 'file') };
    if (link.dc.readyState === 'open') queueMicrotask(() => this.sendControl({ t: 'hello', name: this.client.name, ...this.client.mediaState }));
    queueMicrotask(() => link.flush());
  }

  get pc() {
    return this.link.pc;
  }

  get connectionState() {
    return this.link.connectionState;
  }

  get collisions() {
    return this.link ? this.link.collisions : 0;
  }

  set collisions(v) {
    /* counted on the link */
  }

  closePC() {
    for (const t of this.remoteStream.getTracks()) this.remoteStream.removeTrack(t);
  }

  retryRelay() {
    this.link.retryRelay();
  }

  async replaceTrack() {
    /* the link sends our media once for everybody */
  }

  async applyBitrate() {
    /* see SfuLink.applyBitrate */
  }

  async sample() {
    const ids = new Set(this.remoteStream.getTracks().map((t) => t.id));
    return this.summarize(await this.link.pc.getStats(), (st) => ids.has(st.trackIdentifier));
  }
}

// ---------------------------------------------------------------------------
// Client

/**
 * Whether pc's selected candidate pair goes through a TURN relay of ours.
 * @param {RTCPeerConnection} pc @returns {Promise<boolean>}
 */
async function relayed(pc) {
  try {
    const st = await pc.getStats();
    let pair = null;
    st.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = st.get(s.selectedCandidatePairId);
    });
    const local = pair && st.get(pair.localCandidateId);
    return !!local && local.candidateType === 'relay';
  } catch {
    return false;
  }
}

/**
 * A Parley room member.
 *
 * Events (CustomEvent, payload in .detail): "state", "joined", "peer-joined",
 * "peer-left", "peer-state", "track", "chat", "control", "transfer",
 * "reconnecting", "error", "full", "speaker", and from moderators "muted",
 * "removed", "ended"; "media-closed" when the server closed our sfu link
 * (a new one is already being built).
 */
export class Client extends EventTarget {
  /**
   * @param {{room: string, name?: string, token?: string, server?: string,
   *   transport?: 'auto'|'ws'|'http', iceTransportPolicy?: 'all'|'relay',
   *   localStream?: MediaStream|null, maxFileSize?: number, connectTimeout?: number, debug?: boolean,
   *   mode?: 'p2p'|'sfu', simulcast?: boolean}} opts
   */
  constructor(opts) {
    super();
    this.opts = { transport: 'auto', iceTransportPolicy: 'all', ...opts };
    this.room = opts.room;
    this.name = opts.name || 'Guest';
    this.token = opts.token || '';
    this.base = opts.server || location.origin;
    /** @type {MediaStream|null} */
    this.localStream = opts.localStream || null;
    this.maxFileSize = opts.maxFileSize || 512 * 1024 * 1024;
    /** @type {number} bits per second, 0 = unlimited */
    this.maxBitrate = 0;
    this.mediaState = { audio: true, video: true, screen: false };
    /** @type {Map<string, Peer>} */
    this.peers = new Map();
    /** @type {IceServer[]} */
    this.iceServers = [];
    /** @type {ClientState} */
    this.state = 'idle';
    this.id = '';
    /** your verified identity (from your token), '' on open servers */
    this.identity = '';
    this.verified = false;
    this.host = false;
    this.mode = 'p2p';
    /** What the server lets us do in the room (from "joined"). */
    this.grants = { publish: true, subscribe: true, admin: false };
    /** @type {Map<string, 'audio'|'video'>} our tracks a moderator muted (sfu rooms), by server track id */
    this.heldTracks = new Map();
    this.joining = false;
    /** @type {Signaling|null} */
    this.sig = null;
    /** @type {SfuLink|null} the connection to the server in "sfu" rooms */
    this.link = null;
    this.attempt = 0;
    this.reconnectTimer = 0;
    this.wakeup = null;
  }

  /** @param {...any} a */
  log(...a) {
    if (this.opts.debug) console.debug('[parley]', ...a);
  }

  /** @param {ClientState} s */
  setState(s) {
    if (this.state === s) return;
    this.state = s;
    emit(this, 'state', { state: s });
  }

  /** Transport in use: 'ws' or 'http' (null before connecting). */
  get transport() {
    return this.sig ? this.sig.transport : null;
  }

  /**
   * Connects and joins the room. Resolves with the "joined" message. Rejects
   * with a ParleyError for "full", "unauthorized" and other fatal errors. When
   * the server cannot be reached it keeps retrying (emitting "reconnecting")
   * until it can, or until leave() is called.
   */
  join() {
    if (this.joinPromise) return this.joinPromise;
    this.joinPromise = new Promise((resolve, reject) => {
      this.joinWaiter = { resolve, reject };
    });
    this.connect();
    return this.joinPromise;
  }

  async connect() {
    if (this.state === 'left' || this.state === 'closed') return;
    this.setState(this.id ? 'reconnecting' : 'connecting');
    const sig = new Signaling({ base: this.base, transport: this.opts.transport });
    this.sig = sig;
    try {
      await sig.open();
    } catch (e) {
      if (this.sig !== sig) return;
      this.sig = null;
      return this.scheduleReconnect(e.message || 'server unreachable');
    }
    if (this.sig !== sig || this.state === 'left') return sig.close();
    sig.addEventListener('message', (ev) => this.onServerMessage(/** @type {CustomEvent} */ (ev).detail));
    sig.addEventListener('close', (ev) => {
      if (this.sig !== sig) return;
      this.sig = null;
      this.dropAllPeers();
      this.scheduleReconnect(/** @type {CustomEvent} */ (ev).detail.reason);
    });
    const msg = { type: 'join', room: this.room, name: this.name };
    if (this.token) msg.token = this.token;
    if (this.opts.mode) msg.mode = this.opts.mode; // used if this join creates the room
    this.joining = true;
    sig.send(msg);
  }

  /** @param {string} reason */
  scheduleReconnect(reason) {
    if (this.state === 'left' || this.state === 'closed') return;
    const delay = RECONNECT_DELAYS[Math.min(this.attempt, RECONNECT_DELAYS.length - 1)];
    this.attempt++;
    this.setState('reconnecting');
    emit(this, 'reconnecting', { attempt: this.attempt, delay, at: Date.now() + delay, reason });
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  /** Skips the reconnect countdown. */
  reconnectNow() {
    if (this.state !== 'reconnecting' || this.sig) return;
    clearTimeout(this.reconnectTimer);
    this.connect();
  }

  /** @param {any} m */
  onServerMessage(m) {
    if (!m || typeof m !== 'object') return;
    switch (m.type) {
      case 'joined': {
        this.attempt = 0;
        this.id = m.id;
        this.mode = m.mode || 'p2p';
        this.joining = false;
        this.grants = { publish: true, subscribe: true, admin: false, ...(m.grants || {}) };
        this.heldTracks.clear();
        this.iceServers = Array.isArray(m.iceServers) ? m.iceServers : [];
        if (m.name) this.name = m.name;
        this.identity = m.identity || '';
        this.verified = !!m.verified;
        this.host = !!m.host;
        if (this.link) this.link.close();
        this.link = this.mode === 'sfu' ? new SfuLink(this) : null;
        this.setState('joined');
        for (const info of m.peers || []) this.addPeer(info, false);
        emit(this, 'joined', m);
        if (this.joinWaiter) this.joinWaiter.resolve(m);
        this.joinWaiter = null;
        break;
      }
      case 'peer-joined':
        this.addPeer(m, true);
        break;
      case 'peer-left':
        this.dropPeer(m.id, 'left');
        break;
      case 'signal': {
        const p = this.peers.get(m.from);
        if (p) p.handleSignal(m.data);
        break;
      }
      case 'full':
        this.fail(new ParleyError('full', `The room "${m.room || this.room}" is full.`));
        emit(this, 'full', m);
        break;
      case 'media':
        if (this.link) this.link.onMedia(m.data);
        break;
      case 'tracks':
        if (this.link) this.link.onTracks(m.data);
        break;
      case 'speaker':
        emit(this, 'speaker', { id: m.id });
        break;
      case 'ice-servers': // fresh TURN credentials, before the old ones expire
        if (Array.isArray(m.iceServers)) this.setIceServers(m.iceServers);
        break;
      case 'media-closed':
        // The server closed our media connection (ICE or DTLS failed) and
        // takes an offer from a new one.
        this.log('media closed by the server', m.message);
        this.rebuildLink();
        break;
      case 'muted': {
        // A moderator muted one of our tracks: in sfu rooms the server
        // holds it until we unmute (setMediaState), in p2p rooms we mute
        // ourselves.
        const kind = m.kind === 'video' || m.track === 'video' ? 'video' : 'audio';
        if (m.track && m.track !== 'audio' && m.track !== 'video') this.heldTracks.set(m.track, kind);
        emit(this, 'muted', { kind, track: m.track || kind, by: m.from || '' });
        break;
      }
      case 'removed':
      case 'ended':
        // The server closes the connection after this: no reconnecting.
        this.shutdown('closed');
        emit(this, m.type, { by: m.from || '', room: m.room || this.room, message: m.message || '' });
        break;
      case 'left':
        break;
      case 'error': {
        // "forbidden" ends a join; once in, it refuses one thing (moderating
        // without admin, publishing without publish) and we stay.
        const fatal = ['unauthorized', 'forbidden', 'invalid-room', 'server-full', 'too-many-rooms', 'already-joined'].includes(m.code) && (m.code !== 'forbidden' || this.joining);
        emit(this, 'error', { code: m.code, message: m.message || m.code, fatal });
        if (fatal) this.fail(new ParleyError(m.code, m.message || m.code));
        break;
      }
    }
  }

  /**
   * Uses list for new connections and gives it to the open ones
   * (setConfiguration). A connection whose path goes through a TURN relay
   * restarts ICE, so its relay is allocated again with the fresh
   * credential: the server refuses to refresh an allocation made with an
   * expired one.
   * @param {IceServer[]} list
   */
  setIceServers(list) {
    this.iceServers = list;
    const pcs = new Set([...this.peers.values()].map((p) => p.pc));
    if (this.link) pcs.add(this.link.pc);
    for (const pc of pcs) {
      if (!pc || pc.signalingState === 'closed') continue;
      try {
        pc.setConfiguration({ ...pc.getConfiguration(), iceServers: list });
      } catch (e) {
        this.log('setConfiguration', e);
        continue;
      }
      relayed(pc).then((yes) => {
        if (yes && pc.signalingState !== 'closed') pc.restartIce();
      });
    }
  }

  /** @param {ParleyError} err */
  fail(err) {
    this.shutdown('closed');
    if (this.joinWaiter) this.joinWaiter.reject(err);
    this.joinWaiter = null;
  }

  /** @param {MemberInfo} info @param {boolean} offerer */
  addPeer(info, offerer) {
    if (!info || !info.id || info.id === this.id) return;
    const old = this.peers.get(info.id);
    if (old) old.close();
    const p = this.link ? new SfuPeer(this, info) : new Peer(this, info, offerer);
    this.peers.set(p.id, p);
    p.addEventListener('track', (ev) => emit(this, 'track', /** @type {CustomEvent} */ (ev).detail));
    p.addEventListener('state', () => emit(this, 'peer-state', p));
    emit(this, 'peer-joined', p);
  }

  /** @param {string} id @param {'bye'|'left'|'reconnect'} reason */
  dropPeer(id, reason) {
    const p = this.peers.get(id);
    if (!p) return;
    this.peers.delete(id);
    p.close();
    emit(this, 'peer-left', { peer: p, reason });
  }

  /** A new SfuLink in place of the one the server closed; the peers move to it. */
  rebuildLink() {
    const old = this.link;
    if (!old || this.state !== 'joined') return;
    old.close();
    const link = new SfuLink(this);
    link.tracks = old.tracks;
    link.owner = old.owner;
    link.prefs = old.prefs; // re-sent when the server's track list comes
    this.link = link;
    for (const p of this.peers.values()) {
      p.closePC();
      p.buildPC();
      emit(p, 'state', p);
    }
    emit(this, 'media-closed', { link });
  }

  dropAllPeers() {
    for (const id of [...this.peers.keys()]) this.dropPeer(id, 'reconnect');
    if (this.link) this.link.close();
    this.link = null;
  }

  /** @param {ClientState} state */
  shutdown(state) {
    clearTimeout(this.reconnectTimer);
    this.dropAllPeers();
    if (this.sig) this.sig.close();
    this.sig = null;
    this.setState(state);
  }

  /** Says goodbye to every peer (they drop us at once) and leaves the room. */
  leave() {
    for (const p of this.peers.values()) p.sendControl({ t: 'bye' });
    if (this.sig) this.sig.send({ type: 'leave' });
    const sig = this.sig;
    this.sig = null;
    // Let the goodbye flush before the sockets close.
    setTimeout(() => sig && sig.close(), 300);
    clearTimeout(this.reconnectTimer);
    this.dropAllPeers();
    this.setState('left');
    if (this.joinWaiter) this.joinWaiter.reject(new ParleyError('left', 'left the room'));
    this.joinWaiter = null;
  }

  // --- media

  /**
   * Sets (or clears) the local track of a kind on every peer with replaceTrack:
   * no renegotiation. Also updates localStream.
   * @param {'audio'|'video'} kind @param {MediaStreamTrack|null} track
   */
  async setTrack(kind, track) {
    if (!this.localStream) this.localStream = new MediaStream();
    const s = this.localStream;
    for (const t of kind === 'audio' ? s.getAudioTracks() : s.getVideoTracks()) if (t !== track) s.removeTrack(t);
    if (track && !s.getTracks().includes(track)) s.addTrack(track);
    if (this.link) await this.link.replaceTrack(kind, track).catch((e) => this.log('replaceTrack', e));
    await Promise.all([...this.peers.values()].map((p) => p.replaceTrack(kind, track).catch((e) => this.log('replaceTrack', e))));
  }

  /**
   * Announces the local media state (muted microphone/camera, screen sharing)
   * to every peer over the control channel.
   * @param {{audio?: boolean, video?: boolean, screen?: boolean}} st
   */
  setMediaState(st) {
    Object.assign(this.mediaState, st);
    // Unmuting releases our tracks a moderator had the server hold.
    for (const [track, kind] of this.heldTracks) {
      if (!this.mediaState[kind] || !this.link) continue;
      this.heldTracks.delete(track);
      this.link.send({ unmute: { track } });
    }
    for (const p of this.peers.values()) p.sendControl({ t: 'state', ...this.mediaState });
  }

  /** Caps the outgoing video bitrate for every peer. @param {number} bps 0 = unlimited */
  async setMaxBitrate(bps) {
    this.maxBitrate = bps > 0 ? Math.round(bps) : 0;
    if (this.link) await this.link.applyBitrate();
    await Promise.all([...this.peers.values()].map((p) => p.applyBitrate()));
  }

  // --- moderation (needs the admin grant: grants.admin; otherwise the
  // server answers with a "forbidden" error event)

  /** @param {object} m */
  moderate(m) {
    if (this.sig) this.sig.send({ type: 'moderate', ...m });
  }

  /** Takes a member out of the room (it gets "removed"). @param {string} id */
  removeMember(id) {
    this.moderate({ action: 'remove', id });
  }

  /**
   * Mutes a member: 'audio' (default) or 'video' for all its tracks of that
   * kind, or one server track id. In sfu rooms the server stops forwarding
   * them until the member unmutes.
   * @param {string} id @param {string} [track]
   */
  muteMember(id, track = 'audio') {
    this.moderate({ action: 'mute', id, track });
  }

  /** Ends the room for everyone (each gets "ended"). */
  endRoom() {
    this.moderate({ action: 'end' });
  }

  // --- data

  /**
   * Whether we may send data: in sfu rooms the server relays it only for
   * members with the publish grant (p2p data goes straight to the peers).
   */
  maySend() {
    return !this.link || this.grants.publish;
  }

  /** Sends a chat line to everyone. @param {string} text */
  chat(text) {
    if (!this.maySend()) {
      emit(this, 'error', { code: 'forbidden', message: 'Your access token does not let you send messages in this room (no publish grant).', fatal: false });
      return;
    }
    const ts = Date.now();
    for (const p of this.peers.values()) {
      const ch = p.channels.chat;
      if (ch.readyState === 'open') ch.send(JSON.stringify({ t: 'chat', text, ts }));
    }
    emit(this, 'chat', { peer: null, from: this.id, name: this.name, text, ts, self: true });
  }

  /**
   * Sends an application control message (any JSON object with your own "t"),
   * to one member or to everyone. Receivers get a "control" event.
   * @param {object} message @param {string} [to]
   */
  sendControl(message, to) {
    for (const p of this.peers.values()) if (!to || p.id === to) p.sendControl(message);
  }

  /**
   * Sends a file to one member or (to omitted) to everyone.
   * @param {File|Blob} file @param {string} [to] @returns {Promise<Transfer[]>}
   */
  async sendFile(file, to) {
    if (!this.maySend()) throw new ParleyError('forbidden', 'Your access token does not let you send files in this room (no publish grant).');
    if (file.size > this.maxFileSize) throw new ParleyError('too-large', `File is larger than the ${formatBytes(this.maxFileSize)} limit`);
    const targets = [...this.peers.values()].filter((p) => !to || p.id === to);
    return Promise.all(targets.map((p) => p.sendFile(file)));
  }
}

/** Picks a random readable room id such as "quiet-otter-42". */
export function randomRoomId() {
  const a = ['amber', 'brave', 'calm', 'clever', 'cosmic', 'eager', 'fancy', 'gentle', 'happy', 'jolly', 'kind', 'lively', 'lucky', 'merry', 'misty', 'noble', 'proud', 'quick', 'quiet', 'rapid', 'shiny', 'silver', 'sunny', 'swift', 'tidy', 'vivid', 'warm', 'witty'];
  const n = ['badger', 'comet', 'falcon', 'fern', 'fox', 'harbor', 'heron', 'lake', 'lynx', 'maple', 'meadow', 'moon', 'otter', 'panda', 'pine', 'river', 'robin', 'sparrow', 'star', 'tiger', 'tulip', 'walrus', 'willow', 'wolf'];
  const r = crypto.getRandomValues(new Uint32Array(3));
  return `${a[r[0] % a.length]}-${n[r[1] % n.length]}-${10 + (r[2] % 90)}`;
}
