// @ts-check
// Client: a member of a Parley room — signaling, reconnecting, and its
// peers (p2p) or its link to the server (sfu).

import { ParleyError, emit } from './errors.js';
import { Signaling } from './signaling.js';
import { formatBytes } from './files.js';
import { Peer } from './p2p.js';
import { SfuLink, SfuPeer } from './sfu.js';
import { relayed } from './stats.js';

/** @typedef {import('./errors.js').MemberInfo} MemberInfo */
/** @typedef {import('./signaling.js').OutMessage} OutMessage */
/** @typedef {import('./errors.js').IceServer} IceServer */
/** @typedef {import('./files.js').Transfer} Transfer */
/** @typedef {'idle'|'connecting'|'joined'|'reconnecting'|'left'|'closed'} ClientState */
/**
 * @typedef {{room: string, name?: string, token?: string, server?: string,
 *   transport?: 'auto'|'ws'|'http', iceTransportPolicy?: 'all'|'relay',
 *   localStream?: MediaStream|null, maxFileSize?: number, connectTimeout?: number, debug?: boolean,
 *   mode?: 'p2p'|'sfu', simulcast?: boolean}} ClientOptions
 */

/**
 * Reconnect backoff: 0.5 s doubling to a 3 s cap, each delay drawn between
 * half and all of it (jitter), so a server that comes back is rejoined
 * within about 3 s, and a thousand clients of one server spread out.
 */
const RECONNECT_BASE = 500;
const RECONNECT_CAP = 3000;
/**
 * On a cluster, attempts that fail at one node before the client moves to
 * the next: a short network outage of the client's own should not move
 * its member (what is in flight is lost in a move), and a dead node is
 * left after about 1.5 s.
 */
const NODE_TRIES = 2;
/** Messages kept for sending again after a resume, at most. */
const UNACKED_MAX = 512;

/**
 * The delay before reconnect attempt n (0-based).
 * @param {number} n @param {number} [hint] the server's retryMs, after a server-shutdown
 */
function reconnectDelay(n, hint = 0) {
  const d = hint > 0 && n === 0 ? Math.min(hint, RECONNECT_CAP) : Math.min(RECONNECT_CAP, RECONNECT_BASE * 2 ** Math.min(n, 10));
  return Math.round(d / 2 + (Math.random() * d) / 2);
}

/**
 * A Parley room member.
 *
 * Events (CustomEvent, payload in .detail): "state", "joined", "resumed"
 * (the connection dropped and the same member was taken over: peers kept), "peer-joined",
 * "peer-left", "peer-state", "track", "chat", "control", "signal", "transfer",
 * "reconnecting", "error", "full", "speaker", and from moderators "muted",
 * "removed", "ended"; "media-closed" when the server closed our sfu link
 * (a new one is already being built).
 *
 * Public (docs/client-js.md): the options' room and name, state, id, mode,
 * transport, peers, link (read-only; null in p2p rooms), iceServers, identity,
 * verified, host, grants, localStream, mediaState, maxBitrate, maxFileSize,
 * the events above, and join(), leave(), reconnectNow(), setTrack(),
 * setMediaState(), setMaxBitrate(), chat(), sendControl(), sendFile(),
 * send(), maySend(), rebuildLink(), removeMember(), muteMember(), endRoom(). Members
 * marked @private are enforced by tsc (checkJs); opts, sig, log and dropPeer
 * are library-internal (p2p.js and sfu.js use them), not for pages or tests.
 */
export class Client extends EventTarget {
  /** @param {ClientOptions} opts */
  constructor(opts) {
    super();
    /** @type {ClientOptions} */
    this.opts = { transport: 'auto', iceTransportPolicy: 'all', ...opts };
    this.room = opts.room;
    this.name = opts.name || 'Guest';
    /** @private */
    this.token = opts.token || '';
    /** @private */
    this.base = opts.server || location.origin;
    /**
     * The cluster's other nodes (joined's "nodes", least loaded first):
     * where to go when this server cannot be reached. Empty alone.
     * @type {string[]}
     * @private
     */
    this.nodes = [];
    /**
     * Attempts in a row that failed at this.base.
     * @private
     */
    this.failsHere = 0;
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
    /**
     * @type {Map<string, 'audio'|'video'>} our tracks a moderator muted (sfu rooms), by server track id
     * @private
     */
    this.heldTracks = new Map();
    /** @private */
    this.joining = false;
    /** @type {Signaling|null} */
    this.sig = null;
    /** @type {SfuLink|null} the connection to the server in "sfu" rooms */
    this.link = null;
    /** @private */
    this.attempt = 0;
    /** @private */
    this.reconnectTimer = 0;
    /**
     * The token that resumes this member after a dropped connection (never shown or logged).
     * @private
     */
    this.resumeToken = '';
    /**
     * A dropped connection is being resumed: peers and their connections are kept.
     * @private
     */
    this.resuming = false;
    /**
     * The server said it is shutting down (server-shutdown): its retryMs, until we are back.
     * @private
     */
    this.serverRetry = 0;
    // Nothing lost in a dead socket: messages counted since our join, on
    // connections before this one (recvDone, sentDone) and on this one
    // (sig.received, sig.sent); what we sent and the server has not
    // acknowledged (unacked, numbered), and what we sent with no
    // connection (backlog), to send again after a resume.
    /** @private */
    this.recvDone = 0;
    /** @private */
    this.sentDone = 0;
    /**
     * @type {{n: number, msg: OutMessage}[]}
     * @private
     */
    this.unacked = [];
    /**
     * @type {OutMessage[]}
     * @private
     */
    this.backlog = [];
    /** @private */
    this.wakeup = null;
  }

  /** @param {...any} a */
  log(...a) {
    if (this.opts.debug) console.debug('[parley]', ...a);
  }

  /**
   * @param {ClientState} s
   * @private
   */
  setState(s) {
    if (this.state === s) return;
    this.state = s;
    emit(this, 'state', { state: s });
  }

  /** Whether the client left the room or was closed (it does not reconnect). */
  get gone() {
    return this.state === 'left' || this.state === 'closed';
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

  /**
   * @returns {Promise<void>}
   * @private
   */
  async connect() {
    if (this.gone) return;
    this.setState(this.id ? 'reconnecting' : 'connecting');
    /** @type {Signaling} */
    const sig = new Signaling({ base: this.base, transport: this.opts.transport, got: () => this.recvDone + sig.received });
    this.sig = sig;
    const resume = this.resuming ? { type: 'resume', resume: this.resumeToken, got: this.recvDone } : null;
    try {
      await sig.open(resume || undefined);
    } catch (e) {
      if (this.sig !== sig) return;
      this.sig = null;
      if (e instanceof ParleyError && e.code === 'resume-failed') {
        this.resumeFailed();
        return this.connect();
      }
      if (++this.failsHere >= NODE_TRIES) this.nextNode();
      return this.scheduleReconnect(e.message || 'server unreachable');
    }
    this.failsHere = 0;
    if (this.sig !== sig || this.gone) return sig.close();
    sig.addEventListener('message', (ev) => this.onServerMessage(/** @type {CustomEvent} */ (ev).detail));
    sig.addEventListener('close', (ev) => {
      if (this.sig !== sig) return;
      this.sig = null;
      this.recvDone += sig.received;
      this.sentDone += sig.sent;
      // A member in a room is kept by the server for a while: resume it,
      // keeping the peers, their tiles and connections. Else join afresh.
      this.resuming = !!this.resumeToken && (this.state === 'joined' || this.resuming);
      if (!this.resuming) this.dropAllPeers();
      this.scheduleReconnect(/** @type {CustomEvent} */ (ev).detail.reason);
    });
    if (resume) {
      if (sig.transport === 'ws') sig.send(resume); // over HTTP it opened the session
      return;
    }
    this.sendJoin(sig);
  }

  /**
   * @param {Signaling} sig
   * @private
   */
  sendJoin(sig) {
    /** @type {{type: 'join', room: string, name: string, got: number, token?: string, mode?: 'p2p'|'sfu', host?: boolean}} */
    const msg = { type: 'join', room: this.room, name: this.name, got: sig.received }; // got: we count (see send)
    if (this.token) msg.token = this.token;
    if (this.opts.mode) msg.mode = this.opts.mode; // used if this join creates the room
    if (this.id) {
      // Joining again after the server forgot us (it restarted): the
      // room comes back as it was, should we be first in it.
      msg.mode = /** @type {'p2p'|'sfu'} */ (this.mode);
      if (this.host) msg.host = true;
    }
    this.joining = true;
    sig.send(msg);
  }

  /**
   * Sends a message to the server for our member (the peers' and the sfu
   * link's signaling). It is numbered and kept until the server
   * acknowledges it; with no connection it waits for the resume.
   * @param {OutMessage} msg
   */
  send(msg) {
    if (this.gone) return;
    if (!this.sig || this.sig.closed) {
      if (this.resuming || this.state === 'reconnecting') this.backlog.push(msg);
      return;
    }
    this.sig.send(msg);
    this.unacked.push({ n: this.sentDone + this.sig.sent, msg });
    if (this.unacked.length > UNACKED_MAX) this.unacked.shift();
  }

  /**
   * The server got our first got messages: forget them.
   * @param {number} got
   * @private
   */
  acked(got) {
    let i = 0;
    while (i < this.unacked.length && this.unacked[i].n <= got) i++;
    this.unacked.splice(0, i);
  }

  /**
   * This server cannot be reached: on a cluster, try the next of its
   * other nodes (our resume moves our member there, see movedHere; once
   * the cluster has given our old node up, it fails and we join afresh,
   * the others see us leave and come back).
   * @private
   */
  nextNode() {
    if (!this.nodes.length) return;
    const at = this.nodes.indexOf(this.base);
    const next = this.nodes[(at + 1) % this.nodes.length];
    if (at < 0) this.nodes.push(this.base); // come back here after the others
    this.log('server unreachable; trying node', next);
    this.base = next;
    this.failsHere = 0;
  }

  /**
   * @param {any} m joined or resumed
   * @private
   */
  setNodes(m) {
    if (Array.isArray(m.nodes)) this.nodes = m.nodes.filter((/** @type {any} */ u) => typeof u === 'string' && /^https?:\/\//.test(u));
  }

  /**
   * @param {string} reason
   * @private
   */
  scheduleReconnect(reason) {
    if (this.gone) return;
    const restarting = this.serverRetry > 0;
    const delay = reconnectDelay(this.attempt, this.serverRetry);
    this.attempt++;
    this.setState('reconnecting');
    emit(this, 'reconnecting', { attempt: this.attempt, delay, at: Date.now() + delay, reason: restarting ? 'server restarting' : reason, restarting });
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  /**
   * Checks that the signaling connection is alive now, as when a media
   * connection went down (the network probably changed under both): a ping
   * left unanswered for 3 s ends it, and the client resumes on a new one at
   * once rather than after the keepalive's 20 s.
   */
  checkSignaling() {
    if (this.sig && this.state === 'joined') this.sig.probe(3000);
  }

  /** Skips the reconnect countdown. */
  reconnectNow() {
    if (this.state !== 'reconnecting' || this.sig) return;
    clearTimeout(this.reconnectTimer);
    this.connect();
  }

  /**
   * The server no longer keeps our member: drop what we kept, join afresh.
   * @private
   */
  resumeFailed() {
    this.resuming = false;
    this.resumeToken = '';
    this.dropAllPeers();
  }

  /**
   * Our member moved to this node of the cluster from one that died or
   * that we could not reach: the room kept us (our peers saw no leave),
   * but what was in flight through the old node is lost. Nothing is sent
   * again but what waited for a connection; peers that left meanwhile go,
   * peers that came meanwhile get our offer (theirs went to the old node),
   * the link to the SFU starts afresh here, and connections that failed
   * restart ICE.
   * @param {any} m resumed, with moved
   * @private
   */
  movedHere(m) {
    this.recvDone = 0; // the new node counts from here, as for a join
    this.sentDone = 0;
    this.unacked = [];
    const again = this.backlog;
    this.backlog = [];
    if (Array.isArray(m.iceServers)) this.iceServers = m.iceServers;
    if (m.grants) this.grants = { publish: true, subscribe: true, admin: false, ...m.grants };
    /** @type {Map<string, any>} */
    const listed = new Map((Array.isArray(m.peers) ? m.peers : []).map((/** @type {any} */ p) => [p.id, p]));
    for (const id of [...this.peers.keys()]) if (!listed.has(id)) this.dropPeer(id, 'left');
    for (const info of listed.values()) if (!this.peers.has(info.id)) this.addPeer(info, true);
    if (this.link) this.rebuildLink();
    this.restartFailedIce();
    for (const msg of again) this.send(msg);
  }

  /**
   * Restarts ICE on our connections (peers', the SFU link) that failed or
   * were cut off while we had no signaling.
   * @private
   */
  restartFailedIce() {
    const pcs = new Set([...this.peers.values()].map((p) => p.pc));
    if (this.link) pcs.add(this.link.pc);
    for (const pc of pcs) {
      if (pc && (pc.iceConnectionState === 'failed' || pc.iceConnectionState === 'disconnected')) pc.restartIce();
    }
  }

  /**
   * @param {any} m
   * @private
   */
  onServerMessage(m) {
    if (!m || typeof m !== 'object') return;
    switch (m.type) {
      case 'resumed': {
        // Same member, same room: the others saw no leave. What was queued
        // for us follows; connections that failed meanwhile restart ICE.
        this.attempt = 0;
        this.serverRetry = 0;
        this.resuming = false;
        this.resumeToken = m.resume || '';
        this.setNodes(m);
        this.setState('joined');
        if (m.moved) {
          this.movedHere(m);
          emit(this, 'resumed', m);
          break;
        }
        { // What the server did not get from us, then what waited for a connection.
          if (typeof m.got === 'number') this.acked(m.got);
          const again = [...this.unacked.map((u) => u.msg), ...this.backlog];
          this.unacked = [];
          this.backlog = [];
          for (const msg of again) this.send(msg);
        }
        // (An ICE restart's offer sent while the old connection was dying
        // went again above; keepIceUp offers anew if it stays unanswered.)
        this.restartFailedIce();
        emit(this, 'resumed', m);
        break;
      }
      case 'joined': {
        this.attempt = 0;
        this.serverRetry = 0;
        // A new member: count from this connection's start, as the server does.
        this.recvDone = 0;
        this.sentDone = 0;
        this.unacked = [];
        this.backlog = [];
        this.resumeToken = m.resume || '';
        this.setNodes(m);
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
      case 'pong':
        if (typeof m.got === 'number') this.acked(m.got);
        break;
      case 'server-shutdown':
        // A graceful shutdown (a restart, most likely): the connection
        // closes next; come back after about retryMs, not after a backoff.
        this.serverRetry = Number(m.retryMs) > 0 ? Number(m.retryMs) : 1000;
        this.attempt = 0;
        // A drained node of a cluster names another node to go to.
        if (typeof m.url === 'string' && /^https?:\/\//.test(m.url)) {
          this.base = m.url;
          this.failsHere = 0;
        }
        break;
      case 'error': {
        if (m.code === 'shutting-down' && !this.gone) break; // expected: server-shutdown came first (or the close will say it)
        if (m.code === 'resume-failed') { // join afresh on this connection
          this.resumeFailed();
          if (this.sig) this.sendJoin(this.sig);
          break;
        }
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
   * @private
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

  /**
   * @param {ParleyError} err
   * @private
   */
  fail(err) {
    this.shutdown('closed');
    if (this.joinWaiter) this.joinWaiter.reject(err);
    this.joinWaiter = null;
  }

  /**
   * @param {MemberInfo} info @param {boolean} offerer
   * @private
   */
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

  /** @private */
  dropAllPeers() {
    for (const id of [...this.peers.keys()]) this.dropPeer(id, 'reconnect');
    if (this.link) this.link.close();
    this.link = null;
  }

  /**
   * @param {ClientState} state
   * @private
   */
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

  /**
   * @param {object} m
   * @private
   */
  moderate(m) {
    this.send({ type: 'moderate', ...m });
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
