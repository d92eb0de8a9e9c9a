// @ts-check
// The broadcast page's list of every way into and out of a stream (WHIP,
// RTMP, SRT, RTSP to publish; WHEP, the watch page, RTSP, SRT, RTMP to
// read), each with a copy button. Loaded on demand by broadcast.js. The
// server says which listeners are on and on which ports (GET /api/ingest);
// tokens are never printed here, only where they go.

import { h, $ } from './ui.js';
import { serverInfo } from '../lib/api.js';

/**
 * @typedef {{port: number, publish: boolean, read: boolean}} Listener
 * @typedef {{host: string, auth: boolean, media: boolean, prefer_h264?: boolean, rtmp?: Listener, rtsp?: Listener, srt?: Listener}} Ingest
 * @typedef {{proto: string, url: string, note?: string}} Way
 */

/**
 * The publish and read URLs for a stream.
 * @param {Ingest} info @param {string} stream @param {string} origin
 * @returns {{publish: Way[], read: Way[]}}
 */
export function ways(info, stream, origin) {
  const s = encodeURIComponent(stream);
  const tok = info.auth;
  /** @type {Way[]} */
  const publish = [];
  /** @type {Way[]} */
  const read = [];
  if (info.media) {
    publish.push({ proto: 'WHIP', url: `${origin}/whip/${s}`, note: tok ? 'Token: Authorization: Bearer <token> (OBS: the Bearer Token field).' : '' });
    read.push({ proto: 'WHEP', url: `${origin}/whep/${s}`, note: tok ? 'Token: Authorization: Bearer <token>, granting subscribe.' : '' });
    read.push({ proto: 'Watch page', url: `${origin}/w/${s}` });
  }
  const at = (/** @type {Listener} */ l) => `${info.host}:${l.port}`;
  if (info.rtmp?.publish) {
    publish.push({ proto: 'RTMP', url: `rtmp://${at(info.rtmp)}/live/${s}`, note: tok ? 'Token: add ?token=<token> to the URL (OBS: stream key ' + stream + '?token=<token>).' : '' });
  }
  if (info.srt?.publish) {
    publish.push({ proto: 'SRT', url: `srt://${at(info.srt)}?streamid=publish:${s}`, note: tok ? 'Token: append :<token> to the streamid (publish:' + stream + ':<token>).' : '' });
  }
  if (info.rtsp?.publish) {
    publish.push({ proto: 'RTSP', url: `rtsp://${at(info.rtsp)}/${s}`, note: tok ? 'Token: as the password (any user name), e.g. rtsp://user:<token>@…' : '' });
  }
  if (info.rtsp?.read) {
    read.push({ proto: 'RTSP', url: `rtsp://${at(info.rtsp)}/${s}`, note: tok ? 'Token: as the password (any user name).' : '' });
  }
  if (info.srt?.read) {
    read.push({ proto: 'SRT', url: `srt://${at(info.srt)}?streamid=read:${s}`, note: tok ? 'Token: append :<token> to the streamid.' : '' });
  }
  if (info.rtmp?.read) {
    read.push({ proto: 'RTMP', url: `rtmp://${at(info.rtmp)}/live/${s}`, note: tok ? 'Token: add ?token=<token> to the URL.' : '' });
  }
  return { publish, read };
}

/**
 * Fills #ingest-publish and #ingest-read for stream.
 * @param {string} stream
 */
export async function showIngestURLs(stream) {
  /** @type {Ingest} */
  const info = await serverInfo();
  const w = ways(info, stream, location.origin);
  const status = $('#ingest-copied');
  const row = (/** @type {string} */ kind, /** @type {Way} */ x) => {
    const what = `${x.proto} ${kind} URL`;
    const code = h('code', { text: x.url });
    return h('li', { 'data-proto': x.proto },
      h('span', { class: 'bc-ing-proto', text: x.proto }),
      code,
      h('button', {
        class: 'btn small', type: 'button', text: 'Copy', 'aria-label': `Copy ${what}`,
        onclick: () => copyURL(x.url, what, code, status),
      }),
      x.note ? h('p', { class: 'hint', text: x.note }) : null);
  };
  const none = () => h('li', { class: 'hint', text: 'None: this server runs without media (--media-udp off).' });
  $('#ingest-publish').replaceChildren(...(w.publish.length ? w.publish.map((x) => row('publish', x)) : [none()]));
  $('#ingest-read').replaceChildren(...(w.read.length ? w.read.map((x) => row('read', x)) : [none()]));
  const authNote = $('#ingest-auth');
  authNote.hidden = !info.auth;
  authNote.textContent = info.auth ? 'This server requires a token; the notes say where each protocol takes it. Tokens are not shown here.' : '';
}

/**
 * Copies url, saying so in the live region; when the clipboard refuses,
 * selects the URL so that Ctrl+C copies it.
 * @param {string} url @param {string} what @param {HTMLElement} code @param {HTMLElement} status
 */
async function copyURL(url, what, code, status) {
  try {
    await navigator.clipboard.writeText(url);
    status.textContent = `${what} copied`;
  } catch {
    getSelection()?.selectAllChildren(code);
    status.textContent = `Could not copy: the ${what} is selected, press Ctrl+C (⌘C) to copy it`;
  }
}
