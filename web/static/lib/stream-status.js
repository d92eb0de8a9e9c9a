// @ts-check
// A stream's status pushed by the server (GET /api/streams/<s>/events,
// Server-Sent Events) instead of asking for it every second: one event at
// once, then one whenever the stream goes live or ends, its tracks or
// source change, or (at most once a second) its viewer count changes.

/**
 * What GET /api/streams/<s> answers (docs/api.md).
 * @typedef {{stream: string, live: boolean, tracks: number, viewers: number, source?: any, hls?: any}} StreamStatus
 */

/** Consecutive failures without an event before falling back to fetching. */
const MAX_FAILURES = 3;
/** How often the fallback fetches the status, in ms. */
const FALLBACK_MS = 5000;

/**
 * Calls onStatus with the stream's status now and after every change until
 * stop is called. EventSource reconnects by itself; when it fails
 * MAX_FAILURES times in a row without an event (a proxy that buffers or
 * refuses event streams), the status is fetched every 5 s instead.
 * @param {string} stream
 * @param {string} token an access token for the stream, or ''
 * @param {(status: StreamStatus) => void} onStatus
 * @returns {() => void} stop
 */
export function watchStreamStatus(stream, token, onStatus) {
  const base = `/api/streams/${encodeURIComponent(stream)}`;
  let stopped = false;
  let failures = 0;
  /** @type {EventSource|null} */
  let es = null;
  /** @type {ReturnType<typeof setTimeout>|undefined} */
  let timer;

  /** @param {string} text */
  const deliver = (text) => {
    let st;
    try {
      st = JSON.parse(text);
    } catch {
      return;
    }
    if (!stopped) onStatus(st);
  };

  const open = () => {
    if (stopped) return;
    es = new EventSource(base + '/events' + (token ? `?token=${encodeURIComponent(token)}` : ''));
    es.addEventListener('status', (e) => {
      failures = 0;
      deliver(/** @type {MessageEvent} */ (e).data);
    });
    es.addEventListener('error', () => {
      const s = es;
      if (!s || stopped) return;
      failures++;
      if (failures >= MAX_FAILURES) {
        s.close();
        es = null;
        poll();
      } else if (s.readyState === EventSource.CLOSED) {
        // An HTTP error (e.g. 429): EventSource gives up; try again later.
        es = null;
        timer = setTimeout(open, 2000 * failures);
      }
      // Otherwise EventSource reconnects by itself.
    });
  };

  const poll = async () => {
    if (stopped) return;
    try {
      const r = await fetch(base, { cache: 'no-store', headers: token ? { Authorization: 'Bearer ' + token } : {} });
      if (r.ok) deliver(await r.text());
    } catch {
      /* next time */
    }
    if (!stopped) timer = setTimeout(poll, FALLBACK_MS);
  };

  open();
  return () => {
    stopped = true;
    clearTimeout(timer);
    if (es) es.close();
    es = null;
  };
}
