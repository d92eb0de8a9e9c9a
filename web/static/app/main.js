// @ts-check
// Entry point: picks the page from the URL.
import { h } from './ui.js';
import { randomRoomId } from '../lib/names.js';

/** Shows an error instead of a blank page. @param {string} title @param {string} text */
export function fatal(title, text) {
  const app = document.getElementById('app');
  app.replaceChildren(h('main', { class: 'center' },
    h('div', { class: 'card notice error', role: 'alert' }, h('h1', { text: title }), h('p', { text }),
      h('p', {}, h('a', { class: 'btn primary', href: '/', text: 'Back to the home page' })))));
}

async function route() {
  const path = location.pathname;
  const m = path.match(/^\/r\/?(.*)$/);
  try {
    if (!m) {
      (await import('./home.js')).homePage();
      return;
    }
    let room = decodeURIComponent(m[1] || '').replace(/\/+$/, '');
    if (!room) {
      // A link without a room makes a new one.
      room = randomRoomId();
      history.replaceState(null, '', `/r/${room}${location.search}`);
    }
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(room)) {
      fatal('That is not a room name', 'Room names are 1–64 letters, digits, dots, dashes or underscores.');
      return;
    }
    (await import('./call.js')).callPage(room);
  } catch (e) {
    console.error(e);
    fatal('Parley could not start', String(e && e.message ? e.message : e));
  }
}

window.addEventListener('error', (e) => {
  if (!document.querySelector('#app main')) fatal('Parley could not start', e.message);
});
route();
