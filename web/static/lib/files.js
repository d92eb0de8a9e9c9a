// @ts-check
// File transfers over a member's "file" data channel: 16 KiB chunks with an
// 8-byte header, paced by the channel's buffer, checked with SHA-256.

import { emit, sleep } from './errors.js';

/** @typedef {import('./p2p.js').Peer} Peer */

/** Size of one file chunk on the wire (payload bytes). */
export const CHUNK_SIZE = 16 * 1024;
const CHUNK_HEADER = 8; // u32 transfer id, u32 chunk index (big endian)
const BUFFER_HIGH = 1024 * 1024; // pause sending above this bufferedAmount
/** Resume sending below this (bufferedAmountLowThreshold of file channels). */
export const BUFFER_LOW = 256 * 1024;

/** Hex SHA-256 of an ArrayBuffer or Blob. @param {ArrayBuffer|Blob} data */
export async function sha256Hex(data) {
  const buf = data instanceof Blob ? await data.arrayBuffer() : data;
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', buf));
  return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** @param {number} n */
export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/**
 * One file transfer in either direction. Events: "progress", "state".
 * state: 'sending'|'receiving'|'verifying'|'done'|'failed'|'cancelled'.
 */
export class Transfer extends EventTarget {
  /**
   * @param {Peer} peer
   * @param {{id: number, name: string, size: number, mime?: string, sha256?: string, direction: 'in'|'out'}} info
   */
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
    /** the SHA-256 of what arrived (incoming, once verified) */
    this.received256 = '';
    /** @type {Blob|null} */
    this.blob = null;
    /** @type {ArrayBuffer[]} */
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

/**
 * Sends file to peer over its file channel: an offer, then chunks, paced by
 * the channel's buffer; the receiver's ack finishes it.
 * @param {Peer} peer @param {File|Blob} file @param {string} [name] @returns {Promise<Transfer>}
 */
export async function sendFile(peer, file, name = /** @type {File} */ (file).name || 'file') {
  const buf = await file.arrayBuffer();
  const sha = await sha256Hex(buf);
  let id;
  do id = (Math.random() * 0xffffffff) >>> 0;
  while (peer.transfers.has(id));
  const tr = new Transfer(peer, { id, name, size: buf.byteLength, mime: file.type, sha256: sha, direction: 'out' });
  peer.transfers.set(id, tr);
  emit(peer.client, 'transfer', tr);
  pump(peer, tr, buf);
  return tr;
}

/** @param {Peer} peer @param {Transfer} tr @param {ArrayBuffer} buf */
async function pump(peer, tr, buf) {
  const ch = peer.channels.file;
  if (ch.readyState !== 'open') {
    tr.setState('failed', 'no connection to this member');
    return;
  }
  peer.sendFileCtl({ t: 'file-offer', id: tr.id, name: tr.name, size: tr.size, mime: tr.mime, sha256: tr.sha256 });
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

/**
 * Handles one message of peer's file channel (control JSON or a chunk).
 * @param {Peer} peer @param {string|ArrayBuffer} data
 */
export function receiveFile(peer, data) {
  if (typeof data !== 'string') {
    if (data.byteLength < CHUNK_HEADER) return;
    const dv = new DataView(data);
    const tr = peer.transfers.get(dv.getUint32(0));
    if (!tr || tr.direction !== 'in' || tr.state !== 'receiving') return;
    const index = dv.getUint32(4);
    if (index !== tr.chunks.length) {
      peer.sendFileCtl({ t: 'file-cancel', id: tr.id, dir: 'in', reason: 'chunk out of order' });
      return tr.setState('failed', 'chunk out of order');
    }
    tr.chunks.push(data.slice(CHUNK_HEADER));
    const bytes = tr.bytes + data.byteLength - CHUNK_HEADER;
    if (bytes > tr.size) {
      peer.sendFileCtl({ t: 'file-cancel', id: tr.id, dir: 'in', reason: 'too much data' });
      return tr.setState('failed', 'more data than announced');
    }
    tr.advance(bytes);
    if (bytes === tr.size) finishIncoming(peer, tr);
    return;
  }
  let msg;
  try {
    msg = JSON.parse(data);
  } catch {
    return;
  }
  const tr = peer.transfers.get(msg.id);
  switch (msg.t) {
    case 'file-offer': {
      if (tr || typeof msg.id !== 'number') return;
      const size = Number(msg.size) || 0;
      const name = String(msg.name || 'file').replace(/[\\/\x00-\x1f]/g, '_').slice(0, 200);
      const t = new Transfer(peer, { id: msg.id, name, size, mime: String(msg.mime || ''), sha256: String(msg.sha256 || ''), direction: 'in' });
      peer.transfers.set(t.id, t);
      emit(peer.client, 'transfer', t);
      if (size > peer.client.maxFileSize) {
        peer.sendFileCtl({ t: 'file-cancel', id: t.id, dir: 'in', reason: 'too large' });
        t.setState('failed', `larger than the ${formatBytes(peer.client.maxFileSize)} limit`);
      } else if (size === 0) finishIncoming(peer, t);
      break;
    }
    case 'file-cancel':
      if (tr) tr.setState(msg.reason ? 'failed' : 'cancelled', msg.reason ? `refused: ${msg.reason}` : `cancelled by ${peer.name}`);
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

/** @param {Peer} peer @param {Transfer} tr */
async function finishIncoming(peer, tr) {
  tr.setState('verifying');
  const blob = new Blob(tr.chunks, { type: tr.mime });
  tr.chunks = [];
  const got = await sha256Hex(blob);
  const ok = !tr.sha256 || got === tr.sha256;
  peer.sendFileCtl({ t: 'file-ack', id: tr.id, ok, sha256: got });
  if (!ok) return tr.setState('failed', 'checksum mismatch');
  tr.blob = blob;
  tr.received256 = got;
  tr.url = URL.createObjectURL(blob);
  tr.setState('done');
}
