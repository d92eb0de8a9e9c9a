// @ts-check
// Errors and events shared by the client library's modules.

/**
 * A member as the server describes it. identity/verified: the subject of the
 * member's token, checked by the server (absent on open servers); host: the
 * server holds the member to be a host of the room (from its token's grants).
 * @typedef {{id: string, name: string, identity?: string, verified?: boolean, host?: boolean}} MemberInfo
 * @typedef {{urls: string|string[], username?: string, credential?: string}} IceServer
 * @typedef {{code: string, message: string}} ServerError
 */

/**
 * Error with a machine-readable code (server error codes, plus "full",
 * "unreachable"); status is the HTTP status of a failed request (0 otherwise).
 */
export class ParleyError extends Error {
  /** @param {string} code @param {string} message @param {number} [status] */
  constructor(code, message, status = 0) {
    super(message);
    this.name = 'ParleyError';
    this.code = code;
    this.status = status;
  }
}

/** @param {EventTarget} target @param {string} type @param {any} [detail] */
export function emit(target, type, detail) {
  target.dispatchEvent(new CustomEvent(type, { detail }));
}

/** @param {number} ms */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
