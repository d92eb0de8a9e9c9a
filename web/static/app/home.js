// @ts-check
// Home page: pick a name, create a room or join one.
import { h, icons, store } from './ui.js';
import { randomRoomId } from '../lib/names.js';

export function homePage() {
  document.title = 'Parley — video calls on your own server';
  const name = /** @type {HTMLInputElement} */ (h('input', { id: 'name', name: 'name', autocomplete: 'nickname', maxlength: 64, placeholder: 'e.g. Ada', value: store.get('name') }));
  const room = /** @type {HTMLInputElement} */ (h('input', { id: 'room', name: 'room', maxlength: 200, placeholder: 'room name or link', autocapitalize: 'off', spellcheck: false }));
  const err = h('p', { class: 'form-error', role: 'alert' });
  const remember = () => store.set('name', name.value.trim());
  const kind = h('fieldset', { class: 'room-kind' }, h('legend', { text: 'New room' }),
    h('label', {}, h('input', { type: 'radio', name: 'kind', value: 'p2p', id: 'kind-p2p', checked: store.get('kind') !== 'sfu' }), 'Small call', h('small', { text: 'peer-to-peer, up to ~6 people' })),
    h('label', {}, h('input', { type: 'radio', name: 'kind', value: 'sfu', id: 'kind-sfu', checked: store.get('kind') === 'sfu' }), 'Group', h('small', { text: 'server-routed, 10–30 people' })));
  const go = (r, create) => {
    remember();
    const k = /** @type {HTMLInputElement|null} */ (kind.querySelector('input:checked'));
    const mode = create && k ? k.value : '';
    if (create) store.set('kind', mode);
    location.href = `/r/${encodeURIComponent(r)}${mode === 'sfu' ? '?mode=sfu' : ''}`;
  };
  const create = (e) => {
    e.preventDefault();
    go(randomRoomId(), true);
  };
  const join = (e) => {
    e.preventDefault();
    let r = room.value.trim();
    const m = r.match(/\/r\/([^/?#]+)/);
    if (m) r = decodeURIComponent(m[1]);
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(r)) {
      err.textContent = 'Use 1–64 letters, digits, dots, dashes or underscores, or paste a room link.';
      room.focus();
      return;
    }
    go(r);
  };
  name.addEventListener('change', remember);
  const page = h('main', { class: 'home' },
    h('section', { class: 'hero' },
      h('div', { class: 'brand' }, h('span', { class: 'logo', 'aria-hidden': 'true' }), h('span', { text: 'Parley' })),
      h('h1', { text: 'Video calls, chat and file sharing — on your own server.' }),
      h('p', { class: 'lead', text: 'Create a room, send the link, talk. Peer-to-peer, encrypted, nothing to install.' }),
      h('ul', { class: 'features' },
        ...[['users', 'Group calls'], ['screen', 'Screen sharing'], ['chat', 'Chat'], ['file', 'File transfer'], ['stats', 'Live stats']]
          .map(([i, t]) => h('li', {}, h('span', { class: 'ico', html: icons[i] }), t)))),
    h('section', { class: 'card start' },
      h('label', { for: 'name', text: 'Your name' }), name, kind,
      h('button', { type: 'button', id: 'create', class: 'btn primary big', onclick: create }, h('span', { class: 'ico', html: icons.cam }), 'Create a new room'),
      h('div', { class: 'or', text: 'or join a room' }),
      h('form', { class: 'row', onsubmit: join }, h('label', { for: 'room', class: 'sr-only', text: 'Room name' }), room,
        h('button', { type: 'submit', id: 'join-room', class: 'btn', text: 'Join' })),
      err),
    h('footer', { class: 'foot' }, 'Parley — self-hosted WebRTC. Small calls go directly between browsers; group calls and broadcasts through your server. ',
      h('a', { href: '/check', text: 'Check your connection' }), '.'));
  document.getElementById('app').replaceChildren(page);
  name.focus();
}
