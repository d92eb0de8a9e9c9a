// @ts-check
// Chat of a broadcast: the publisher and the viewers of stream S meet in the
// signaling room "chat.S" (p2p mode, so nobody opens a peer connection) and
// talk with `signal` to "*". The publisher says whether chat is on:
//   {t: 'chat-state', on, publisher: true}   to everyone, and to each newcomer
//   {t: 'chat', text}                        a message
// Who hosts is the server's word, not the sender's: peers come with "host"
// (a token granting publish or admin; on an open server, the first member
// present that asked, which the publisher's page does), and only a host's
// chat-state counts. Peers with a token also come "verified" with their
// "identity".
// Events: 'state' (detail {on, connected}), 'message' (detail {from, name,
// text, ts, self, host, verified, identity}), 'members' (detail count).

import { Signaling } from './signaling.js';

/** @typedef {{name: string, host: boolean, verified: boolean, identity: string}} ChatMember */

/** @param {any} p @returns {ChatMember} */
function member(p) {
  return { name: p.name || 'Viewer', host: !!p.host, verified: !!p.verified, identity: p.identity || '' };
}

/** Room name of a stream's chat ('' when the name would be too long). @param {string} stream */
export function chatRoom(stream) {
  const r = 'chat.' + stream;
  return r.length <= 64 ? r : '';
}

export class BroadcastChat extends EventTarget {
  /**
   * @param {string} stream
   * @param {{name: string, publisher?: boolean, token?: string}} opts
   */
  constructor(stream, opts) {
    super();
    this.room = chatRoom(stream);
    this.name = opts.name || 'Viewer';
    this.publisher = !!opts.publisher;
    /** @private */
    this.token = opts.token || '';
    /** chat allowed (the publisher's switch) */
    this.on = false;
    this.connected = false;
    this.id = '';
    this.hostId = '';
    /** the server holds us to be a host (see above) */
    this.isHost = false;
    /** @type {Map<string, ChatMember>} member id → what the server says of it */
    this.names = new Map();
    /**
     * @type {Signaling|null}
     * @private
     */
    this.sig = null;
    /** @private */
    this.closed = false;
    /** @private */
    this.retry = 0;
    /** @private */
    this.timer = 0;
  }

  async connect() {
    if (!this.room || this.closed) return;
    const sig = new Signaling({ base: location.origin });
    this.sig = sig;
    try {
      await sig.open();
    } catch {
      if (this.sig === sig) this.lost(sig);
      return;
    }
    if (this.sig !== sig) return sig.close();
    sig.addEventListener('message', (ev) => this.onMessage(/** @type {CustomEvent} */ (ev).detail));
    sig.addEventListener('close', () => this.lost(sig));
    /** @type {any} */
    const j = { type: 'join', room: this.room, name: this.name };
    if (this.publisher) j.host = true; // counts on open servers; with tokens the grant decides
    if (this.token) j.token = this.token;
    sig.send(j);
  }

  /**
   * The connection sig is gone: say so and connect again after a while. @param {Signaling} sig
   * @private
   */
  lost(sig) {
    if (this.sig !== sig) return;
    this.sig = null;
    this.connected = false;
    this.names.clear();
    this.emitState();
    if (this.closed) return;
    this.retry = Math.min(this.retry + 1, 6);
    this.timer = setTimeout(() => this.connect(), 500 * 2 ** this.retry);
  }

  /**
   * @param {any} m
   * @private
   */
  onMessage(m) {
    switch (m.type) {
      case 'joined':
        this.id = m.id;
        this.connected = true;
        this.retry = 0;
        this.isHost = !!m.host;
        this.names.clear();
        for (const p of m.peers || []) this.names.set(p.id, member(p));
        if (this.publisher && !this.isHost) this.emit('error', { code: 'not-host', message: 'The server does not hold this page to be the host of the chat: viewers will not follow its chat switch.' });
        if (this.publisher) this.sendTo('*', { t: 'chat-state', on: this.on, publisher: true });
        this.emitState();
        this.emitMembers();
        break;
      case 'peer-joined':
        this.names.set(m.id, member(m));
        if (this.publisher) this.sendTo(m.id, { t: 'chat-state', on: this.on, publisher: true });
        this.emitMembers();
        break;
      case 'peer-left':
        this.names.delete(m.id);
        if (m.id === this.hostId && !this.publisher) {
          this.hostId = '';
          this.on = false;
          this.emitState();
        }
        this.emitMembers();
        break;
      case 'signal': {
        const d = m.data || {};
        const from = this.names.get(m.from);
        if (d.t === 'chat-state' && from && from.host && !this.publisher) {
          this.hostId = m.from;
          this.on = !!d.on;
          this.emitState();
        } else if (d.t === 'chat' && typeof d.text === 'string' && (this.on || this.publisher)) {
          const p = from || member({});
          this.emit('message', { from: m.from, name: p.name, text: d.text.slice(0, 2000), ts: Date.now(), self: false, host: p.host, verified: p.verified, identity: p.identity });
        }
        break;
      }
      case 'error':
        if (m.code === 'unauthorized' || m.code === 'forbidden' || m.code === 'full') this.emit('error', { code: m.code, message: m.message || m.code });
        break;
    }
  }

  /**
   * @param {string} to @param {any} data
   * @private
   */
  sendTo(to, data) {
    if (this.sig && this.connected) this.sig.send({ type: 'signal', to, data });
  }

  /** Publisher only: allows or stops viewer chat. @param {boolean} on */
  setEnabled(on) {
    this.on = on;
    this.sendTo('*', { t: 'chat-state', on, publisher: true });
    this.emitState();
  }

  /** @param {string} text */
  send(text) {
    text = text.trim().slice(0, 2000);
    if (!text || !this.connected || !(this.on || this.publisher)) return false;
    this.sendTo('*', { t: 'chat', text });
    this.emit('message', { from: this.id, name: this.name, text, ts: Date.now(), self: true, host: this.isHost, verified: false, identity: '' });
    return true;
  }

  /** Rejoins the chat under another name. @param {string} name */
  rename(name) {
    this.name = name;
    const sig = this.sig;
    if (!sig || this.closed) return;
    this.sig = null;
    this.connected = false;
    this.names.clear();
    this.emitState();
    sig.send({ type: 'leave' });
    sig.close();
    this.connect();
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    const sig = this.sig;
    this.sig = null;
    if (sig) {
      sig.send({ type: 'leave' });
      sig.close();
    }
  }

  /** @private */
  emitState() {
    this.emit('state', { on: this.on, connected: this.connected });
  }

  /** @private */
  emitMembers() {
    this.emit('members', this.names.size + 1);
  }

  /**
   * @param {string} type @param {any} detail
   * @private
   */
  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
