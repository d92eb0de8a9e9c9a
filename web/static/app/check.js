// @ts-check
// The connection check page (/check): runs lib/check.js's probes and says
// in plain words what works, what is blocked and what that means for calls.

import { runChecks } from '../lib/check.js';
import { h, $ } from './ui.js';

/** @typedef {import('../lib/check.js').ProbeResult} ProbeResult */

/**
 * The sentence for one result: what was tested, and what it means.
 * @param {ProbeResult} r
 * @returns {string}
 */
export function describe(r) {
  if (r.needsToken) {
    /** @type {Record<string, string>} */
    const names = { 'turn-udp': 'TURN over UDP', 'turn-tcp': 'TURN over TCP', 'turn-tls': 'TURN over TLS', 'media-udp': 'Media over UDP', 'media-tcp': 'Media over TCP' };
    const name = names[r.id] || r.id;
    const what = r.id.startsWith('media') ? 'tests its media port only for' : 'lends its relay only to';
    return `${name}: not checked: this server ${what} people with an access token (open this page with ?token= and yours).`;
  }
  const port = r.port ? ` (port ${r.port})` : '';
  switch (`${r.id}:${r.status}`) {
    case 'stun:ok':
      return r.natted
        ? 'STUN works: your browser found its public address, so calls can often go directly between browsers.'
        : 'STUN works: your address is not translated (no NAT), so calls can go directly between browsers.';
    case 'stun:blocked':
      return 'STUN blocked: your browser cannot learn its public address, so calls may need the relay (TURN).';
    case 'stun:unavailable':
      return 'STUN is not available on this server: calls between networks will need the relay (TURN).';
    case 'turn-udp:ok':
      return 'TURN over UDP works: calls will connect through the server\'s relay when a direct path fails.';
    case 'turn-udp:blocked':
      return 'TURN over UDP blocked: the relay will have to go over TCP, which can add delay.';
    case 'turn-udp:unavailable':
      return 'TURN over UDP: TURN is not available on this server, so there is no relay when a direct path fails.';
    case 'turn-tcp:ok':
      return 'TURN over TCP works: calls will connect even if your network blocks UDP.';
    case 'turn-tcp:blocked':
      return 'TURN over TCP blocked: if your network also blocks UDP, calls through the relay will not connect.';
    case 'turn-tcp:unavailable':
      return 'TURN over TCP: TURN is not available on this server, so calls cannot fall back to TCP through a relay.';
    case 'turn-tls:ok':
      return 'TURN over TLS works: calls will connect even on networks that allow only secure web traffic.';
    case 'turn-tls:blocked':
      return 'TURN over TLS blocked: on networks that allow only secure web traffic, calls will not connect.';
    case 'turn-tls:unavailable':
      return 'TURN over TLS: not offered by this server.';
    case 'media-udp:ok':
      return `Media port over UDP works${port}: group calls and broadcasts will send audio and video straight to the server.`;
    case 'media-udp:blocked':
      return `Media port over UDP blocked${port}: group calls and broadcasts will use TCP or the relay, which can add delay.`;
    case 'media-udp:unavailable':
      return 'Media port: this server has no group calls or broadcasts (its media plane is off).';
    case 'media-tcp:ok':
      return `Media port over TCP works${port}: group calls will connect even if your network blocks UDP.`;
    case 'media-tcp:blocked':
      return `Media port over TCP blocked${port}: if UDP is blocked too, group calls need the relay.`;
    case 'media-tcp:unavailable':
      return 'Media over TCP: not offered by this server.';
  }
  return `${r.id}: ${r.status}`;
}

/**
 * The one-line verdict over all results.
 * @param {ProbeResult[]} rs
 * @returns {string}
 */
export function summarize(rs) {
  /** @param {string} id */
  const ok = (id) => rs.some((r) => r.id === id && r.status === 'ok');
  const relay = ok('turn-udp') || ok('turn-tcp') || ok('turn-tls');
  const turnOff = rs.filter((r) => r.id.startsWith('turn-') && r.id !== 'turn-tls').every((r) => r.status === 'unavailable' && !r.needsToken);
  const group = ok('media-udp') || ok('media-tcp') || relay;
  const parts = [];
  if ((ok('stun') || relay) && group) parts.push('Calls, group calls and broadcasts should connect from this network.');
  else if (ok('stun') || relay) parts.push('Calls between browsers should connect, but group calls and broadcasts may not.');
  else if (group) parts.push('Group calls and broadcasts should connect, but calls between browsers on different networks may not.');
  else parts.push('Calls may not connect from this network.');
  if (turnOff) parts.push('TURN is not available on this server.');
  return parts.join(' ');
}

const run = /** @type {HTMLButtonElement} */ ($('#run'));
const list = /** @type {HTMLElement} */ ($('#results'));
const summary = /** @type {HTMLElement} */ ($('#summary'));
const region = /** @type {HTMLElement} */ ($('#results-region'));
const token = new URLSearchParams(location.search).get('token') || '';

async function check() {
  run.disabled = true;
  region.setAttribute('aria-busy', 'true');
  summary.textContent = 'Checking…';
  list.replaceChildren();
  /** @type {Map<string, HTMLElement>} */
  const rows = new Map();
  try {
    const rs = await runChecks((r) => {
      const li = h('li', { class: r.status, 'data-probe': r.id, 'data-status': r.status, text: describe(r) });
      if (r.error && r.status === 'blocked') li.append(h('span', { class: 'detail', text: 'Browser said: ' + r.error }));
      rows.set(r.id, li);
      list.append(li);
    }, { token });
    list.replaceChildren(...rs.map((r) => /** @type {HTMLElement} */ (rows.get(r.id))));
    summary.textContent = summarize(rs);
  } catch (e) {
    summary.textContent = 'The check could not start: ' + (e instanceof Error ? e.message : String(e));
  } finally {
    region.setAttribute('aria-busy', 'false');
    run.disabled = false;
  }
}

run.addEventListener('click', check);
check();
