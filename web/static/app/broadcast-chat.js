// @ts-check
// The chat box of the broadcast pages: a message list and a form bound to a
// BroadcastChat (lib/chat.js, which talks to the server).

import { verifiedMark } from './ui.js';

/** @typedef {import('../lib/chat.js').BroadcastChat} BroadcastChat */

/** A chat list + form bound to a BroadcastChat. @param {BroadcastChat} chat @param {typeof import('./ui.js').h} h */
export function chatBox(chat, h) {
  const list = h('ol', { id: 'chat-list', class: 'chat-list', 'aria-live': 'polite' });
  const empty = h('p', { class: 'empty', text: 'No messages yet.' });
  const input = /** @type {HTMLInputElement} */ (h('input', { id: 'chat-input', maxlength: 2000, autocomplete: 'off', placeholder: 'Say something', 'aria-label': 'Message' }));
  const send = h('button', { type: 'submit', class: 'btn primary', id: 'chat-send', text: 'Send' });
  const form = h('form', { class: 'chat-form', onsubmit: (e) => {
    e.preventDefault();
    if (chat.send(input.value)) input.value = '';
  } }, input, send);
  chat.addEventListener('message', (e) => {
    const d = /** @type {CustomEvent} */ (e).detail;
    empty.hidden = true;
    const li = h('li', { class: `msg ${d.self ? 'mine' : ''} ${d.host ? 'host' : ''}`, 'data-from': d.name },
      h('div', { class: 'msg-meta' }, h('span', { class: 'msg-name', text: d.self ? 'You' : d.name }),
        d.verified ? verifiedMark(d.identity) : null,
        d.host ? h('span', { class: 'host-badge', text: 'host' }) : null,
        h('time', { class: 'msg-time', text: new Date(d.ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) })),
      h('div', { class: 'msg-text', text: d.text }));
    list.append(li);
    while (list.children.length > 300) list.firstChild.remove();
    list.scrollTop = list.scrollHeight;
  });
  const sync = () => {
    const ok = chat.connected && (chat.on || chat.publisher);
    input.disabled = send.disabled = !ok;
  };
  chat.addEventListener('state', sync);
  sync();
  return h('div', { class: 'bc-chat-box' }, empty, list, form);
}
