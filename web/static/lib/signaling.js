// @ts-check
// Signaling transports: one connection to the server's signaling endpoint,
// over WebSocket or, where that does not get through, HTTP long-polling.

import { ParleyError, emit } from './errors.js';

/** @typedef {{type: string, [key: string]: any}} OutMessage a protocol object to the server */

/**
 * One signaling connection (WebSocket or HTTP long-poll). Emits "message"
 * (detail: server object; pongs only when they carry "got") and "close"
 * (detail: {reason}). Once closed it stays closed; the client makes a new
 * one to reconnect. It counts the messages it received (all but
 * "resumed") and sent (all but "resume"): what a resume acknowledges
 * (docs/protocol.md, "Nothing lost in a dead socket").
 */
export class Signaling extends EventTarget {
  /** @param {{base: string, transport?: 'auto'|'ws'|'http', timeout?: number, got?: () => number}} opts */
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
    /**
     * @type {ReturnType<typeof setTimeout>|undefined}
     * @private
     */
    this.probeTimer = undefined;
    /** messages received, but "resumed" */
    this.received = 0;
    /** messages sent, but "resume" */
    this.sent = 0;
    /** how many messages the client got from the server in all, for pings */
    this.got = opts.got || (() => this.received);
  }

  /**
   * Opens the connection; rejects when no transport works. resume, when
   * given, is the resume message: over HTTP it opens the session (a refused
   * resume rejects with code "resume-failed"); over WebSocket the client
   * sends it as the first message.
   * @param {object} [resume]
   */
  async open(resume) {
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
      await this.openHTTP(resume);
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
          this.send({ type: 'ping', got: this.got() });
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

  /** @param {object} [resume] */
  async openHTTP(resume) {
    const init = resume ? { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(resume) } : { method: 'POST' };
    const r = await this.fetchT(this.base + '/api/session', init);
    if (r.status === 410) throw new ParleyError('resume-failed', 'the session cannot be resumed');
    if (!r.ok) throw new ParleyError('unreachable', `HTTP ${r.status} from /api/session`);
    const j = await r.json();
    this.sid = j.id;
    this.poll();
  }

  /** fetch with the connection's abort signal and a timeout. */
  /** @param {string} url @param {RequestInit} [init] @param {number} [ms] */
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

  /**
   * @param {string|object} raw
   * @param {boolean} [counted] false for what the server did not send as a message (an HTTP error answer)
   */
  deliver(raw, counted = true) {
    if (this.closed) return;
    this.lastSeen = Date.now();
    /** @type {any} */
    let msg = raw;
    if (typeof raw === 'string') {
      try {
        msg = JSON.parse(raw);
      } catch {
        return;
      }
    }
    // A resumed is not counted, but one that moved us to another node of a
    // cluster, where the count starts again with it.
    if (msg && (msg.type !== 'resumed' || msg.moved) && counted) this.received++;
    if (msg && msg.type === 'pong' && typeof msg.got !== 'number') return;
    emit(this, 'message', msg);
  }

  /** Sends one protocol object. @param {OutMessage} msg */
  send(msg) {
    if (this.closed) return;
    if (this.transport === 'ws') {
      if (this.ws.readyState !== WebSocket.OPEN) return;
      this.ws.send(JSON.stringify(msg));
      if (msg.type !== 'resume') this.sent++;
      return;
    }
    if (msg.type !== 'resume') this.sent++;
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
          /** @type {any} */
          const body = await r.json().catch(() => /** @type {any} */ (null));
          this.deliver(body && body.type ? body : { type: 'error', code: (body && body.code) || 'http-' + r.status, message: (body && body.message) || `HTTP ${r.status}` }, false);
        }
      } catch (e) {
        if (!this.closed) this.shut(`send failed: ${e.message}`);
      }
    });
  }

  /**
   * Checks the connection now (a WebSocket can stay open for 20 s after the
   * network under it went away): a ping that must be answered within ms,
   * else the connection counts as dead and closes ("close" event). Over
   * HTTP each request has its own timeout already.
   * @param {number} ms
   */
  probe(ms) {
    if (this.closed || this.transport !== 'ws' || this.probeTimer) return;
    const since = Date.now();
    this.send({ type: 'ping', got: this.got() });
    this.probeTimer = setTimeout(() => {
      this.probeTimer = undefined;
      if (this.closed || this.lastSeen >= since) return;
      if (this.ws) this.ws.close();
      this.shut('no answer from server');
    }, ms);
  }

  /** @param {string} reason */
  shut(reason) {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.pinger);
    clearTimeout(this.probeTimer);
    emit(this, 'close', { reason });
  }

  /** Closes without a "close" event. */
  close() {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.pinger);
    clearTimeout(this.probeTimer);
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
