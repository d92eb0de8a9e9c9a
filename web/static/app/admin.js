// @ts-check
// What the operators' pages (/status, /recordings) share: the admin
// token (?token= or typed into #token-form; kept for the tab's session)
// and loading a management API with it, the form shown when the server
// asks for a token.
import { $ } from './ui.js';
import { api } from '../lib/api.js';

let token = new URLSearchParams(location.search).get('token') || sessionStorage.getItem('parley.token.status') || '';

/** The admin token ('' when none). */
export function adminToken() { return token; }

/**
 * A management API request with the admin token (see api in lib/api.js).
 * @param {string} url @param {{method?: string, body?: any}} [opts]
 */
export function adminAPI(url, opts = {}) { return api(url, { ...opts, token }); }

/** Shows an error in the page's #error alert. @param {string} text */
export function showError(text) {
  $('#error').textContent = text;
  $('#error').hidden = false;
}

/**
 * GETs a management API; on 401/403 asks for a token (#token-form) and
 * returns null, on another error says so and returns null.
 * @param {string} url @param {string} what
 */
export async function adminGet(url, what) {
  try {
    const body = await adminAPI(url);
    $('#error').hidden = true;
    $('#token-form').hidden = true;
    return body;
  } catch (e) {
    if (e.status === 401 || e.status === 403) {
      showError((e.message || 'An admin token is needed.') + ' Enter an admin token.');
      $('#token-form').hidden = false;
    } else showError(`Cannot load ${what}: ${e.message}`);
    return null;
  }
}

/** Takes a typed token from #token-form, then calls reload. @param {() => void} reload */
export function onToken(reload) {
  $('#token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    token = /** @type {HTMLInputElement} */ ($('#token')).value.trim();
    sessionStorage.setItem('parley.token.status', token);
    reload();
  });
}
