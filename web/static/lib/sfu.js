// @ts-check
// SFU rooms: one connection to the server carries every member's media and
// data; the compact SDP form (raw DEFLATE) of "media" messages.

import { emit } from './errors.js';
import { BUFFER_LOW } from './files.js';
import { Peer, keepIceUp } from './p2p.js';
import { SIMULCAST, capBitrate } from './simulcast.js';

/** @typedef {import('./client.js').Client} Client */
/** @typedef {import('./errors.js').MemberInfo} MemberInfo */

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

/**
 * The member's single RTCPeerConnection to the server in an "sfu" room.
 * The server offers when others' tracks come and go; we offer when ours
 * change. We are the polite side. Data for other members goes through the
 * server-relayed channel "parley".
 *
 * Public (docs/client-js.md, "SFU rooms"): pc (read-only), connectionState,
 * tracks (read-only), prefer(). Members marked @private are enforced by tsc;
 * the rest are library-internal (used by client.js and SfuPeer).
 */
export class SfuLink {
  /** @param {Client} client */
  constructor(client) {
    /** @private */
    this.client = client;
    this.relay = client.opts.iceTransportPolicy === 'relay';
    /** @type {Map<string, string>} stream or track id → publisher member id */
    this.owner = new Map();
    /**
     * @type {{track: MediaStreamTrack, stream: string}[]} tracks whose publisher is not known yet
     * @private
     */
    this.pending = [];
    /** @type {any[]} the server's last "tracks" list */
    this.tracks = [];
    /** @type {Map<string, {quality: 'low'|'medium'|'high', paused: boolean}>} by member */
    this.prefs = new Map();
    /**
     * @type {Map<string, string>} what was last asked per server track id
     * @private
     */
    this.sentPrefs = new Map();
    /** @private */
    this.queue = Promise.resolve();
    /** @private */
    this.makingOffer = false;
    this.collisions = 0;
    /** @private */
    this.generation = 0; // counts remote offers, to drop offers made stale by one
    /** @private */
    this.reoffer = false;
    /** @private */
    this.stuck = false;
    /** @private */
    this.connected = false; // has been up (then keepIceUp brings it back)
    /** @private */
    this.closed = false;
    this.build();
  }

  /** @private */
  build() {
    const c = this.client;
    const pc = new RTCPeerConnection({ iceServers: c.iceServers, iceTransportPolicy: this.relay ? 'relay' : 'all', bundlePolicy: 'max-bundle' });
    /**
     * The connection to the server. Public and read-only: for getStats(),
     * its states and descriptions; the library negotiates it.
     * @type {RTCPeerConnection}
     */
    this.pc = pc;
    const s = c.localStream;
    const streams = s ? [s] : [];
    /**
     * @type {RTCRtpTransceiver|null}
     * @private
     */
    this.audioTx = null;
    /**
     * @type {RTCRtpTransceiver|null}
     * @private
     */
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
        this.connected = true;
        this.applyBitrate();
      }
      // Never connected: one ICE restart (once up, keepIceUp restarts it).
      if (pc.connectionState === 'failed' && !this.connected && !this.restarted) {
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
    // The restart's offer is ours (onnegotiationneeded), with new ICE credentials.
    /** @private */
    this.ice = keepIceUp(pc, c);
    /** @private */
    this.stuckTimer = setTimeout(() => {
      if (this.closed || pc.connectionState === 'connected') return;
      this.stuck = true;
      this.touchPeers();
    }, c.opts.connectTimeout || 12000);
  }

  /** @private */
  touchPeers() {
    for (const p of this.client.peers.values()) emit(p, 'state', p);
  }

  get connectionState() {
    const st = this.pc.connectionState;
    return this.stuck && st !== 'connected' && st !== 'closed' ? 'failed' : st;
  }

  /** @param {object} data */
  send(data) {
    this.client.send({ type: 'media', data });
  }

  /** @private */
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

  /**
   * @param {any} d
   * @private
   */
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

  /**
   * Puts a received track on its publisher's stream. @param {MediaStreamTrack} track @param {string} stream
   * @private
   */
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
      /** @param {string} t @param {EventListener} f */
      addEventListener: (t, f) => link.dc.addEventListener(t, f),
      /** @param {string} t @param {EventListener} f */
      removeEventListener: (t, f) => link.dc.removeEventListener(t, f),
    };
  }

  /** @param {'audio'|'video'} kind @param {MediaStreamTrack|null} track */
  async replaceTrack(kind, track) {
    const tx = kind === 'audio' ? this.audioTx : this.videoTx;
    if (tx) await tx.sender.replaceTrack(track);
  }

  async applyBitrate() {
    await capBitrate(this.pc, this.videoTx, this.client.maxBitrate || 0).catch((e) => this.client.log('setParameters', e));
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
    this.ice.stop();
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
    this.pc = link.pc;
    this.relay = link.relay;
    this.remoteStream = this.remoteStream || new MediaStream();
    this.channels = { control: link.channelTo(this, 'control'), chat: link.channelTo(this, 'chat'), file: link.channelTo(this, 'file') };
    if (link.dc.readyState === 'open') queueMicrotask(() => this.sendControl({ t: 'hello', name: this.client.name, ...this.client.mediaState }));
    queueMicrotask(() => link.flush());
  }

  /**
   * A member's signal in an sfu room: media go through the server, so a
   * description, candidate or restart from a member is never ours to apply
   * (it would renegotiate the shared link); an application's own data is
   * the "signal" event. @param {any} data
   */
  handleSignal(data) {
    if (!data || data.description || data.candidate || data.restart) {
      this.client.log('ignored a media signal from a member of an sfu room', this.id);
    } else {
      emit(this.client, 'signal', { peer: this, data });
    }
    return Promise.resolve();
  }

  get connectionState() {
    return this.link.connectionState;
  }

  get collisions() {
    return this.link ? this.link.collisions : 0;
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
