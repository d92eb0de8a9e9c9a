// @ts-check
// The light show's control connection (/api/shows/<name>/ws), for its host
// page and its screens.

/**
 * Keeps a WebSocket to /api/shows/<name>/ws open, reconnecting with backoff
 * (at once after close code 4001, the server replacing the connection).
 * query() builds the query string at each connect; onMessage gets each JSON
 * message, onState 'connecting'|'open'|'closed' (with the close event).
 */
export class ControlSocket {
  /**
   * @param {string} name @param {() => string} query
   * @param {{onMessage?: (m: any) => void, onState?: (state: string, ev?: CloseEvent) => void}} [handlers]
   */
  constructor(name, query, { onMessage, onState } = {}) {
    this.name = name;
    /** @private */
    this.query = query;
    /** @private */
    this.onMessage = onMessage || (() => {});
    /** @private */
    this.onState = onState || (() => {});
    /** @private */
    this.ws = null;
    /** @private */
    this.backoff = 500;
    /** @private */
    this.stopped = false;
    this.state = 'connecting';
    this.connect();
  }

  /** @private */
  connect() {
    if (this.stopped) return;
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const url = `${proto}//${location.host}/api/shows/${encodeURIComponent(this.name)}/ws?${this.query()}`;
    const ws = new WebSocket(url);
    this.ws = ws;
    this.setState('connecting');
    ws.onopen = () => { this.backoff = 500; this.setState('open'); };
    ws.onmessage = (ev) => {
      let m;
      try { m = JSON.parse(ev.data); } catch { return; }
      this.onMessage(m);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.setState('closed', ev);
      if (this.stopped) return;
      const delay = ev.code === 4001 ? 100 : this.backoff;
      this.backoff = Math.min(5000, this.backoff * 2);
      setTimeout(() => this.connect(), delay + Math.random() * 200);
    };
  }

  /**
   * @param {string} s @param {CloseEvent} [ev]
   * @private
   */
  setState(s, ev) {
    this.state = s;
    this.onState(s, ev);
  }

  /** Sends m as JSON; false when not connected. @param {any} m */
  send(m) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(m));
      return true;
    }
    return false;
  }

  close() {
    this.stopped = true;
    if (this.ws) this.ws.close(1000);
  }
}
