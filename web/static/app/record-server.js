// @ts-check
// Server-side recording buttons: the broadcast page's Record (POST/DELETE
// /api/streams/<stream>/record) and the call page's Record on server for
// a group room (/api/rooms/<room>/record). Recording is management, so
// the buttons are there only for a token with the admin grant (the server
// checks it again); the files are on the Recordings page.
import { h, iconButton, setButton } from './ui.js';
import { api } from '../lib/api.js';

/** Whether a JWT's payload grants admin (read, not verified: the server verifies). @param {string} token */
export function grantsAdmin(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return !!JSON.parse(atob(part)).grants?.admin;
  } catch {
    return false;
  }
}

/**
 * Makes btn an aria-pressed toggle of a recording at url; show(on) relabels
 * it, mine(recorder) finds its recorder in GET /api/recordings.
 * @param {HTMLButtonElement} btn @param {string} url @param {string} token
 * @param {(on: boolean) => void} show @param {(r: any) => boolean} mine @param {(text: string) => void} say
 */
function toggle(btn, url, token, show, mine, say) {
  const set = (on) => { btn.setAttribute('aria-pressed', String(on)); show(on); };
  set(false);
  api('/api/recordings', { token })
    .then((l) => set(!!l?.recorders?.some((r) => mine(r) && r.state !== 'failed')))
    .catch(() => {});
  btn.addEventListener('click', async () => {
    const on = btn.getAttribute('aria-pressed') === 'true';
    btn.disabled = true;
    try {
      // Already stopped (404) or already recording (409) is the state asked for.
      await api(url, { method: on ? 'DELETE' : 'POST', token }).catch((e) => {
        if (e.status !== (on ? 404 : 409)) throw e;
      });
      set(!on);
      say(on ? 'Recording stopped: the files are on the Recordings page.' : 'Recording on the server.');
    } catch (e) {
      say(`Recording: ${e.message}`);
    } finally {
      btn.disabled = false;
    }
  });
  return btn;
}

/**
 * The broadcast page's button, or null when the token cannot record.
 * @param {string} stream @param {string} token @param {(text: string) => void} say
 */
export function recordButton(stream, token, say) {
  if (!grantsAdmin(token)) return null;
  const btn = /** @type {HTMLButtonElement} */ (h('button', { class: 'btn big', type: 'button', id: 'record' }, 'Record'));
  return toggle(btn, `/api/streams/${encodeURIComponent(stream)}/record`, token,
    (on) => { btn.textContent = on ? 'Stop recording' : 'Record'; }, (r) => r.stream === stream, say);
}

/**
 * The call page's button for a group room (the caller checks the admin
 * grant the server gave the member).
 * @param {string} room @param {string} token @param {(text: string) => void} say
 */
export function roomRecordButton(room, token, say) {
  const btn = /** @type {HTMLButtonElement} */ (iconButton({ id: 'btn-server-record', icon: 'record', label: 'Record on server' }));
  return toggle(btn, `/api/rooms/${encodeURIComponent(room)}/record`, token,
    (on) => { setButton(btn, 'record', on ? 'Stop server recording' : 'Record on server'); btn.classList.toggle('on', on); },
    (r) => r.room === room, say);
}
