// @ts-check
// The server's HTTP APIs: auth headers, JSON requests whose failures are
// ParleyErrors (code and message from the server's JSON error body, .status
// the HTTP status), and the server's ingest information.

import { ParleyError } from './errors.js';

/** The Bearer header of token, or none. @param {string} [token] @returns {Record<string, string>} */
export function authHeaders(token) {
  return token ? { Authorization: 'Bearer ' + token } : {};
}

/**
 * The ParleyError of a failed response: code and message from its JSON
 * error body ({error: {code, message}}, internal/httperr) when it has one.
 * @param {Response} res
 */
export async function readError(res) {
  let code = 'http-' + res.status;
  let message = res.statusText || 'HTTP ' + res.status;
  try {
    const j = await res.json();
    const e = j && (typeof j.error === 'object' ? j.error : j);
    if (e) {
      code = e.code || code;
      message = e.message || message;
    }
  } catch {
    /* not JSON */
  }
  return new ParleyError(code, message, res.status);
}

/**
 * A request to one of the server's JSON APIs (never cached). body, when
 * given, goes as JSON. Resolves with the parsed answer (null when it has no
 * body); rejects with a ParleyError for a non-2xx answer (its .status the
 * HTTP status) or code "unreachable" when the server cannot be reached.
 * @param {string} url
 * @param {{method?: string, token?: string, body?: any}} [opts]
 * @returns {Promise<any>}
 */
export async function api(url, { method = 'GET', token = '', body } = {}) {
  /** @type {Record<string, string>} */
  const headers = authHeaders(token);
  /** @type {RequestInit} */
  const init = { method, cache: 'no-store', headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(url, init);
  } catch (e) {
    throw new ParleyError('unreachable', `server unreachable (${e instanceof Error ? e.message : e})`);
  }
  if (!res.ok) throw await readError(res);
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

/** @type {Promise<any>|null} */
let infoPromise = null;
// serverInfo is the server's GET /api/ingest (fetched once per page): which
// ways in and out of a stream it offers, whether it wants tokens, and
// whether browser publishers should send H.264 (prefer_h264).
export function serverInfo() {
  if (!infoPromise) {
    infoPromise = api('/api/ingest');
    infoPromise.catch(() => { infoPromise = null; }); // the next call asks again
  }
  return infoPromise;
}
