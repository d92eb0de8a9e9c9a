// @ts-check
// A p2p room member: one RTCPeerConnection per remote member, perfect
// negotiation, trickle ICE, and the data channels "control", "chat", "file".

import { emit } from './errors.js';
import { BUFFER_LOW, sendFile, receiveFile } from './files.js';
import { summarize } from './stats.js';
import { capBitrate } from './simulcast.js';

/** @typedef {import('./errors.js').MemberInfo} MemberInfo */
/** @typedef {import('./client.js').Client} Client */
/** @typedef {import('./stats.js').PeerStats} PeerStats */
/** @typedef {import('./files.js').Transfer} Transfer */
/**
 * A data channel to the member, or in sfu rooms its stand-in through the
 * server's relay (SfuLink.channelTo).
 * @typedef {Pick<RTCDataChannel, 'label'|'readyState'|'bufferedAmount'|'bufferedAmountLowThreshold'|'addEventListener'|'removeEventListener'>
 *   & {send(data: string|Uint8Array): void}} Channel
 */

const CHANNELS = /** @type {const} */ ({ control: 0, chat: 1, file: 2 });

/** How long ICE may stay 'disconnected' before it is restarted (ms). */
const ICE_GRACE = 2000;
/** The least time between two ICE restarts of one connection (ms). */
const ICE_RETRY = 5000;

/**
 * Restarts ICE on pc now. An offer of ours still unanswered (sent on a
 * connection that died with the network, so it never arrived) is rolled
 * back first: restartIce() alone waits for 'stable', which that offer's
 * answer would never bring. The new offer goes out through the
 * connection's own negotiation (onnegotiationneeded).
 * @param {RTCPeerConnection} pc
 * @returns {Promise<void>}
 */
export async function restartIceNow(pc) {
  if (pc.signalingState === 'closed') return;
  if (pc.signalingState === 'have-local-offer') await pc.setLocalDescription({ type: 'rollback' });
  pc.restartIce();
}

/**
 * Keeps a connection that was up alive across network changes (a laptop
 * moving to another network, a link that drops): restarts ICE when its state
 * turns 'failed', when it stays 'disconnected' for ICE_GRACE, and on the
 * browser's 'online' and navigator.connection 'change' events; then again
 * every ICE_RETRY while it does not come back (the offer may have been lost
 * with the network: restartIceNow). A connection never up is left to
 * its first-connection handling. With onState false only the network events
 * restart it: between two browsers one side watches the ICE state (two
 * restarts crossing each other left one side without a pair in the lab),
 * while the side whose network changed restarts at once. Either way
 * client.checkSignaling() runs as soon as ICE is in trouble: the signaling
 * connection most likely died with the same network, and the restart's
 * offer and answer need it.
 * @param {RTCPeerConnection} pc @param {Client} client @param {boolean} [onState]
 * @returns {{stop: () => void, readonly restarts: number}}
 */
export function keepIceUp(pc, client, onState = true) {
  let up = false;
  let last = -Infinity;
  let restarts = 0;
  let retrying = false; // a restart's offer is out: retry until it is answered
  /** @type {ReturnType<typeof setTimeout>|undefined} */
  let timer;
  /** @param {string} why */
  const restart = (why) => {
    if (pc.signalingState === 'closed') return;
    last = performance.now();
    restarts++;
    client.log('ice restart', why, pc.signalingState);
    restartIceNow(pc).catch((e) => client.log('ice restart', e));
    retrying = true;
    timer = setTimeout(retry, ICE_RETRY);
  };
  // The restart's offer still unanswered: lost on the way (the other side's
  // 'connected' proves nothing then: ICE checks with our new credentials
  // may succeed one way against the old remote ones).
  const retry = () => (pc.signalingState === 'have-local-offer' ? restart('offer unanswered') : check());
  /** @param {string} why @param {number} grace */
  const schedule = (why, grace) => {
    clearTimeout(timer);
    timer = setTimeout(() => restart(why), Math.max(grace, last + ICE_RETRY - performance.now()));
  };
  const check = () => {
    const st = pc.iceConnectionState;
    if (st === 'connected' || st === 'completed') {
      up = true;
      if (retrying && pc.signalingState === 'have-local-offer') return;
      retrying = false;
      clearTimeout(timer);
      return;
    }
    if (!up || st === 'closed') return;
    if (st === 'disconnected' || st === 'failed') client.checkSignaling();
    if (!onState) return;
    schedule(st, st === 'failed' ? 0 : ICE_GRACE);
  };
  const onNetwork = () => {
    if (!up) return;
    client.checkSignaling();
    schedule('network change', 0);
  };
  pc.addEventListener('iceconnectionstatechange', check);
  const conn = /** @type {EventTarget|undefined} */ (/** @type {any} */ (navigator).connection);
  addEventListener('online', onNetwork);
  if (conn) conn.addEventListener('change', onNetwork);
  return {
    stop() {
      clearTimeout(timer);
      pc.removeEventListener('iceconnectionstatechange', check);
      removeEventListener('online', onNetwork);
      if (conn) conn.removeEventListener('change', onNetwork);
    },
    get restarts() {
      return restarts;
    },
  };
}

/**
 * One remote member: its RTCPeerConnection, data channels and state.
 * Events: "track", "state" (connection/mute/name change), "control", "chat".
 *
 * Public (docs/client-js.md, "Peer"): id, name, identity, verified, host, pc
 * (read-only), remoteStream, media, connectionState, relay, collisions,
 * channels, transfers, retryRelay(), sendControl(), sendFile(), sample().
 * Members marked @private are enforced by tsc; the rest (close, closePC,
 * buildPC, handleSignal, replaceTrack, applyBitrate, sendFileCtl, …) are
 * library-internal: used by client.js and sfu.js, not by pages or tests.
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
    /** @private */
    this.polite = client.id > info.id; // lexically larger id yields in glare
    /** @private */
    this.offerer = offerer;
    this.remoteStream = new MediaStream();
    /** Remote media state as announced by the peer. */
    this.media = { audio: true, video: true, screen: false };
    this.relay = client.opts.iceTransportPolicy === 'relay';
    /** @private */
    this.makingOffer = false;
    /** @private */
    this.ignoreOffer = false;
    /** @private */
    this.answerPending = false;
    /** @private */
    this.crossed = 0; // offers that crossed ours (resolved by perfect negotiation)
    /** @private */
    this.waitingForOffer = !offerer;
    /** @private */
    this.queue = Promise.resolve();
    /** @type {Map<number, Transfer>} */
    this.transfers = new Map();
    this.closed = false;
    /** @private */
    this.connectedAt = 0;
    /** @private */
    this.createdAt = performance.now();
    /** @private */
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
    /**
     * The connection to this member. Public and read-only: for getStats(),
     * its states and descriptions; the library negotiates it.
     * @type {RTCPeerConnection}
     */
    this.pc = pc;
    /** @private */
    this.audioTx = null;
    /** @private */
    this.videoTx = null;
    this.remoteStream = new MediaStream();
    /** @type {Record<string, Channel>} */
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
      if (pc.connectionState === 'failed' && !this.connectedAt) {
        // Never connected: one automatic ICE restart, then let the user
        // choose "retry through relay" (once up, keepIceUp restarts it).
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
    // The impolite side restarts on ICE state (its offer wins a collision).
    /** @private */
    this.ice = keepIceUp(pc, c, !this.polite);
    // Some failures never reach 'failed' (e.g. relay-only with no usable TURN:
    // no candidates at all), so a connection that is not up in time counts as failed.
    /** @private */
    this.stuck = false;
    clearTimeout(this.stuckTimer);
    /** @private */
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

  /** Offers that crossed ours (glare, resolved by perfect negotiation). */
  get collisions() {
    return this.crossed;
  }

  /** @private */
  addTransceivers() {
    const s = this.client.localStream;
    const a = s && s.getAudioTracks()[0];
    const v = s && s.getVideoTracks()[0];
    const streams = s ? [s] : [];
    if (!this.audioTx) this.audioTx = this.pc.addTransceiver(a || 'audio', { direction: 'sendrecv', streams });
    if (!this.videoTx) this.videoTx = this.pc.addTransceiver(v || 'video', { direction: 'sendrecv', streams });
  }

  /**
   * After a remote offer, adopt the transceivers it created and send our media on them.
   * @private
   */
  adoptTransceivers() {
    const s = this.client.localStream;
    for (const t of this.pc.getTransceivers()) {
      if (t.currentDirection === 'stopped') continue;
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

  /**
   * @param {object} data
   * @private
   */
  signal(data) {
    this.client.send({ type: 'signal', to: this.id, data });
  }

  /** Handles a signaling payload from this peer (serialized). @param {any} data */
  handleSignal(data) {
    this.queue = this.queue.then(() => this.onSignal(data)).catch((e) => this.client.log('signal error', e));
    return this.queue;
  }

  /**
   * @param {any} data
   * @private
   */
  async onSignal(data) {
    if (this.closed || !data) return;
    const pc = this.pc;
    const { description, candidate } = data;
    if (description) {
      const ready = !this.makingOffer && (pc.signalingState === 'stable' || this.answerPending);
      const collision = description.type === 'offer' && !ready;
      if (collision) this.crossed++;
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
    } else {
      emit(this.client, 'signal', { peer: this, data });
    }
  }

  /**
   * Tears down and recreates the peer connection, optionally relay-only
   * (iceTransportPolicy 'relay'). Tells the other side to do the same.
   * @param {boolean} relay @param {boolean} [tell]
   * @private
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
    if (this.ice) this.ice.stop();
    if (!this.pc) return;
    this.pc.onnegotiationneeded = this.pc.onicecandidate = this.pc.ontrack = null;
    this.pc.onconnectionstatechange = this.pc.onsignalingstatechange = null;
    for (const ch of Object.values(this.channels)) {
      const dc = /** @type {RTCDataChannel} */ (ch);
      dc.onmessage = dc.onopen = dc.onclose = null;
    }
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
    if (tx && tx.currentDirection !== 'stopped') await tx.sender.replaceTrack(track);
  }

  async applyBitrate() {
    await capBitrate(this.pc, this.videoTx, this.client.maxBitrate || 0).catch((e) => this.client.log('setParameters', e));
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

  /** @param {File|Blob} file @param {string} [name] @returns {Promise<Transfer>} */
  sendFile(file, name) {
    return sendFile(this, file, name);
  }

  /** @param {string|ArrayBuffer} data */
  onFileMessage(data) {
    receiveFile(this, data);
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
   * @protected
   */
  summarize(report, mine) {
    const { stats, sample } = summarize(report, this.prevStats, mine, this.relay);
    this.prevStats = sample;
    return stats;
  }
}
