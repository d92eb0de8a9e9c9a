// The broadcast page's Record button: server-side recording of the stream
// (POST/DELETE /api/streams/<stream>/record). Recording is management, so
// the button is there only for a host whose token carries the admin grant
// (the server checks it again); the files are on the Recordings page.
import { h } from './ui.js';
import { authHeaders } from './whip.js';

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
 * A toggle button recording the stream on the server, or null when the
 * token cannot record. say reports what happened (a status line).
 * @param {string} stream @param {string} token @param {(text: string) => void} say
 */
export function recordButton(stream, token, say) {
  if (!grantsAdmin(token)) return null;
  const url = `/api/streams/${encodeURIComponent(stream)}/record`;
  const btn = /** @type {HTMLButtonElement} */ (h('button', { class: 'btn big', type: 'button', id: 'record', 'aria-pressed': 'false' }, 'Record'));
  const show = (on) => {
    btn.setAttribute('aria-pressed', String(on));
    btn.textContent = on ? 'Stop recording' : 'Record';
  };
  fetch('/api/recordings', { cache: 'no-store', headers: authHeaders(token) })
    .then((r) => (r.ok ? r.json() : null))
    .then((l) => show(!!l?.recorders?.some((r) => r.stream === stream && r.state !== 'failed')))
    .catch(() => {});
  btn.addEventListener('click', async () => {
    const on = btn.getAttribute('aria-pressed') === 'true';
    btn.disabled = true;
    try {
      const res = await fetch(url, { method: on ? 'DELETE' : 'POST', headers: authHeaders(token) });
      if (!res.ok && res.status !== (on ? 404 : 409)) {
        const e = await res.json().catch(() => ({}));
        say(`Recording: ${e.message || res.statusText}`);
        return;
      }
      show(!on);
      say(on ? 'Recording stopped: the file is on the Recordings page.' : 'Recording on the server.');
    } finally {
      btn.disabled = false;
    }
  });
  return btn;
}
