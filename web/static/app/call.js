// @ts-check
// Call page: lobby (preview, name, devices) then the call itself.
import { Client } from '../lib/client.js';
import { formatBytes } from '../lib/files.js';
import { h, $, icons, iconButton, setButton, toast, announce, clock, initials, hue, store, download, verifiedMark } from './ui.js';
import { LocalMedia, RESOLUTIONS, EFFECTS, describeMediaError } from './media.js';
import { StatsBoard } from './stats.js';
import { groupView } from './group.js';

const BITRATES = [['0', 'Unlimited'], ['2000', '2000 kbps'], ['1000', '1000 kbps'], ['500', '500 kbps'], ['300', '300 kbps'], ['200', '200 kbps'], ['100', '100 kbps']];

/** @typedef {import('../parley.js').Peer} Peer */
/** @typedef {import('../lib/files.js').Transfer} Transfer */
/** A panel's content; add and refresh where the panel has them. @typedef {HTMLDivElement & {add?: (x: any) => void, refresh?: () => void}} PanelBody */

/** @param {string} room */
export function callPage(room) {
  const q = new URLSearchParams(location.search);
  const app = {
    room,
    name: q.get('name') || store.get('name'),
    token: q.get('token') || sessionStorage.getItem('parley.token.' + room) || '',
    relay: q.get('relay') === '1',
    /** room mode asked for when this join creates the room ('' = server default) */
    mode: q.get('mode') === 'sfu' || q.get('mode') === 'p2p' ? q.get('mode') : '',
    transport: /** @type {'auto'|'ws'|'http'} */ (q.get('transport') || 'auto'),
    media: new LocalMedia({
      cam: store.get('cam'), mic: store.get('mic'), speaker: store.get('speaker'),
      res: store.get('res', '720'), fps: Number(store.get('fps', '30')), effect: store.get('effect', 'none'),
    }),
    /** @type {Client|null} */
    client: null,
    /** @type {StatsBoard|null} */
    stats: null,
    /** Join was pressed and no remote frame has been shown since (for the "parley:join-to-first-frame" measure). */
    awaitingFirstFrame: false,
    /** @type {Transfer[]} */
    transfers: [],
    maxFileSize: Number(store.get('maxFileMB', '512')) * 1024 * 1024,
    maxBitrate: Number(q.get('bitrate') || store.get('bitrate', '0')) * 1000,
    want: { audio: true, video: true },
    unread: 0,
    panel: '',
  };
  // The page's library object, for debugging and the browser tests: the
  // Client (public API, docs/client-js.md) and nothing of the page's state.
  /** @type {any} */ (window).parleyApp = Object.freeze({ get client() { return app.client; } });
  document.title = `${room} · Parley`;
  lobby(app);
}

// ---------------------------------------------------------------------------
// Lobby

function lobby(app) {
  const preview = h('video', { id: 'preview', autoplay: true, playsInline: true, muted: true });
  const tile = h('div', { class: 'tile self mirror lobby-tile', 'data-name': app.name || 'You' }, preview,
    h('div', { class: 'avatar' }, h('span', { text: initials(app.name || 'You') })));
  const name = /** @type {HTMLInputElement} */ (h('input', { id: 'name-input', maxlength: 64, autocomplete: 'nickname', placeholder: 'Your name', value: app.name }));
  const status = h('div', { id: 'media-status', class: 'media-status', role: 'status' }, 'Starting camera and microphone…');
  const joinBtn = h('button', { type: 'submit', id: 'join', class: 'btn primary big' }, h('span', { class: 'ico', html: icons.cam }), 'Join now');
  const devs = h('div', { class: 'lobby-devices' });
  const form = h('form', { class: 'card lobby-card', onsubmit: (e) => { e.preventDefault(); join(); } },
    h('p', { class: 'eyebrow', text: 'Ready to join?' }),
    h('h1', { class: 'room-title', text: app.room }),
    h('label', { for: 'name-input', text: 'Your name' }), name,
    devs, status, joinBtn,
    h('button', { type: 'button', class: 'btn ghost', id: 'copy-link-lobby', onclick: () => copyLink(app) }, h('span', { class: 'ico', html: icons.link }), 'Copy invite link'));
  document.getElementById('app').replaceChildren(h('main', { class: 'lobby' }, h('a', { class: 'brand small', href: '/', 'aria-label': 'Parley home' }, h('span', { class: 'logo' }), 'Parley'), h('div', { class: 'lobby-grid' }, tile, form)));
  name.focus();

  const showPreview = () => {
    preview.srcObject = app.media.previewStream;
    tile.dataset.videoMuted = String(!app.media.output);
  };
  const fillDevices = async () => {
    const d = await app.media.devices().catch(() => ({ cams: [], mics: [], speakers: [] }));
    devs.replaceChildren(...deviceSelects(app, d, false));
  };

  const startMedia = async () => {
    status.className = 'media-status';
    status.textContent = 'Starting camera and microphone…';
    joinBtn.disabled = true;
    try {
      await app.media.start(app.want);
      // Lay the lobby out before enabling Join: the device pickers go above
      // the button, and adding them later moved it from under the pointer.
      status.textContent = '';
      showPreview();
      await fillDevices();
      joinBtn.disabled = false;
    } catch (e) {
      showPreview();
      const m = describeMediaError(e);
      app.mediaError = m.code;
      status.className = 'media-status error';
      status.id = 'media-status';
      status.dataset.code = m.code;
      status.replaceChildren(h('span', { class: 'ico', html: icons.warn }), h('p', { id: 'media-error', role: 'alert', text: m.text }),
        h('div', { class: 'row wrap' },
          h('button', { type: 'button', class: 'btn', id: 'join-audio-only', onclick: async () => { app.want = { audio: true, video: false }; await startMedia(); if (!app.mediaError) join(); } }, 'Join with audio only'),
          h('button', { type: 'button', class: 'btn', id: 'join-receive-only', onclick: () => { app.want = { audio: false, video: false }; app.media.stop(); join(); } }, 'Join without camera or mic'),
          h('button', { type: 'button', class: 'btn ghost', id: 'retry-media', onclick: () => { app.want = { audio: true, video: true }; startMedia(); } }, 'Try again')));
      joinBtn.disabled = true;
      return;
    }
    app.mediaError = '';
  };
  app.media.addEventListener('output', showPreview);
  const join = () => {
    app.media.removeEventListener('output', showPreview);
    app.name = name.value.trim().slice(0, 64) || 'Guest';
    store.set('name', app.name);
    // Join → first remote frame, as a User Timing measure (performance.getEntriesByName).
    performance.clearMarks('parley:join');
    performance.mark('parley:join');
    app.awaitingFirstFrame = true;
    enterCall(app);
  };
  name.addEventListener('input', () => { tile.querySelector('.avatar span').textContent = initials(name.value || 'You'); });
  startMedia();
}

/** @returns {HTMLElement[]} */
function deviceSelects(app, d, inCall) {
  const m = app.media;
  const opt = (list, cur, none) => [
    ...(list.length ? [] : [h('option', { value: '', text: none })]),
    ...list.map((x, i) => h('option', { value: x.deviceId, text: x.label || `${none.replace('No ', '')} ${i + 1}`, selected: x.deviceId === cur })),
  ];
  const camSel = h('select', { id: 'cam-select', onchange: async (e) => {
    m.settings.cam = e.target.value;
    store.set('cam', m.settings.cam);
    await applyVideo(app);
  } }, ...opt(d.cams, m.settings.cam || (m.camera && m.camera.getSettings().deviceId), 'No camera'));
  const micSel = h('select', { id: 'mic-select', onchange: async (e) => {
    m.settings.mic = e.target.value;
    store.set('mic', m.settings.mic);
    try {
      await m.switchMic();
    } catch (err) {
      toast(describeMediaError(err).text, 'error');
    }
  } }, ...opt(d.mics, m.settings.mic || (m.mic && m.mic.getSettings().deviceId), 'No microphone'));
  const sinkOK = 'setSinkId' in HTMLMediaElement.prototype;
  const spkSel = h('select', { id: 'speaker-select', disabled: !sinkOK, onchange: (e) => {
    m.settings.speaker = e.target.value;
    store.set('speaker', m.settings.speaker);
    applySink(app);
  } }, ...(sinkOK ? opt(d.speakers, m.settings.speaker, 'Default speaker') : [h('option', { text: 'Default (browser cannot choose)' })]));
  const resSel = h('select', { id: 'res-select', onchange: async (e) => {
    m.settings.res = e.target.value;
    store.set('res', m.settings.res);
    await applyVideo(app);
  } }, ...Object.keys(RESOLUTIONS).map((k) => h('option', { value: k, text: `${k}p`, selected: k === String(m.settings.res) })));
  const fpsSel = h('select', { id: 'fps-select', onchange: async (e) => {
    m.settings.fps = Number(e.target.value);
    store.set('fps', String(m.settings.fps));
    await applyVideo(app);
  } }, ...[15, 24, 30, 60].map((f) => h('option', { value: f, text: `${f} fps`, selected: f === Number(m.settings.fps) })));
  const field = (id, label, el) => h('div', { class: 'field' }, h('label', { for: id, text: label }), el);
  const out = [field('cam-select', 'Camera', camSel), field('mic-select', 'Microphone', micSel), field('speaker-select', 'Speaker', spkSel),
    h('div', { class: 'row two' }, field('res-select', 'Resolution', resSel), field('fps-select', 'Frame rate', fpsSel))];
  if (inCall) return out;
  return [h('details', { class: 'devices' }, h('summary', { text: 'Camera, microphone and speaker' }), ...out)];
}

async function applyVideo(app) {
  if (!app.media.camera && !app.want.video) return;
  try {
    await app.media.switchCamera();
  } catch (err) {
    toast(describeMediaError(err).text, 'error');
  }
}

function applySink(app) {
  const id = app.media.settings.speaker;
  for (const v of document.querySelectorAll('.tile.remote video')) {
    // @ts-ignore setSinkId is not everywhere
    if (v.setSinkId) v.setSinkId(id || '').catch(() => {});
  }
}

function copyLink(app) {
  const sfu = (app.client ? app.client.mode : app.mode) === 'sfu';
  const url = `${location.origin}/r/${encodeURIComponent(app.room)}${sfu ? '?mode=sfu' : ''}`;
  (navigator.clipboard ? navigator.clipboard.writeText(url) : Promise.reject())
    .then(() => toast('Invite link copied', 'ok'), () => toast(url));
}

// ---------------------------------------------------------------------------
// Call

function enterCall(app) {
  const m = app.media;
  const grid = h('div', { id: 'grid', class: 'grid' });
  const banner = h('div', { id: 'banner', class: 'banner', hidden: true, role: 'alert' });
  const panel = h('aside', { id: 'panel', class: 'panel', hidden: true, 'aria-label': 'Side panel' });
  const count = h('span', { id: 'member-count', class: 'pill', title: 'People in the call' });
  const connText = h('span', { class: 'conn-text', text: 'Connecting…' });
  const conn = h('span', { id: 'conn', class: 'pill conn', 'data-state': 'connecting', title: 'Connecting…' }, connText);
  // While recording: how much is recorded (a second a chunk), e.g. "REC 0:03".
  const recIndicator = h('span', { id: 'rec-indicator', class: 'pill rec-indicator', role: 'timer', 'aria-label': 'Recording time', hidden: true });
  const controls = h('footer', { class: 'controls', role: 'toolbar', 'aria-label': 'Call controls' });
  const top = h('header', { class: 'topbar' },
    h('a', { class: 'brand small', href: '/', 'aria-label': 'Parley home' }, h('span', { class: 'logo' }), h('span', { class: 'brand-name', text: 'Parley' })),
    h('div', { class: 'room' }, h('h1', { class: 'room-name' }, h('span', { class: 'sr-only', text: 'Call in room ' }), app.room),
      h('button', { type: 'button', class: 'btn ghost small', id: 'copy-link', 'aria-label': 'Copy link', onclick: () => copyLink(app) }, h('span', { class: 'ico', html: icons.link }), h('span', { class: 'lbl', text: 'Copy link' }))),
    h('div', { class: 'top-right' }, recIndicator, count, conn));
  const stage = h('main', { class: 'stage' }, grid, banner);
  const root = h('div', { class: 'call', id: 'call' }, top, h('div', { class: 'body' }, stage, panel), controls);
  document.getElementById('app').replaceChildren(root);
  app.grid = grid;
  app.panelEl = panel;

  const client = new Client({
    room: app.room, name: app.name, token: app.token, transport: app.transport,
    iceTransportPolicy: app.relay ? 'relay' : 'all', localStream: m.sendStream, maxFileSize: app.maxFileSize, mode: app.mode || undefined,
    debug: new URLSearchParams(location.search).has('debug'),
  });
  client.maxBitrate = app.maxBitrate;
  client.mediaState = { audio: m.audioEnabled && !!m.mic, video: m.videoEnabled && !!m.output, screen: false };
  app.client = client;
  app.stats = new StatsBoard(client);
  // Recording and snapshots load on first use (record.js); until then
  // nothing records.
  app.recorder = { recording: false, stop() {}, addAudio() {} };
  const recording = () => import('./record.js');

  // Local tile
  const self = makeTile(app, { id: 'self', name: `${app.name} (you)` }, true);
  grid.append(self);
  const selfVideo = self.querySelector('video');
  const refreshSelf = () => {
    selfVideo.srcObject = m.previewStream;
    self.dataset.videoMuted = String(!m.output || !m.videoEnabled);
    self.dataset.audioMuted = String(!m.mic || !m.audioEnabled);
    self.classList.toggle('mirror', !m.sharing);
  };
  refreshSelf();
  m.addEventListener('output', (e) => {
    client.setTrack('video', /** @type {CustomEvent} */ (e).detail);
    refreshSelf();
  });
  m.addEventListener('mic', (e) => {
    client.setTrack('audio', /** @type {CustomEvent} */ (e).detail);
    refreshSelf();
    updateButtons();
  });
  m.addEventListener('screen-ended', () => {
    client.setMediaState({ screen: false });
    refreshSelf();
    updateButtons();
  });

  // Controls
  const btn = {
    mic: iconButton({ id: 'btn-mic', icon: 'mic', label: 'Mute', onclick: () => toggleMic() }),
    cam: iconButton({ id: 'btn-cam', icon: 'cam', label: 'Stop video', onclick: () => toggleCam() }),
    share: iconButton({ id: 'btn-share', icon: 'screen', label: 'Share', onclick: (e) => shareMenu(e) }),
    chat: iconButton({ id: 'btn-chat', icon: 'chat', label: 'Chat', onclick: () => togglePanel('chat') }),
    files: iconButton({ id: 'btn-files', icon: 'file', label: 'Files', onclick: () => togglePanel('files') }),
    stats: iconButton({ id: 'btn-stats', icon: 'stats', label: 'Stats', onclick: () => togglePanel('stats') }),
    settings: iconButton({ id: 'btn-settings', icon: 'gear', label: 'Settings', onclick: () => togglePanel('settings') }),
    record: iconButton({ id: 'btn-record', icon: 'record', label: 'Record', onclick: () => toggleRecord() }),
    snap: iconButton({ id: 'btn-snap', icon: 'snap', label: 'Snapshot', onclick: () => recording().then((r) => r.snapshot(grid, app.room)).then(() => toast('Snapshot saved', 'ok'), (e) => toast(`Cannot take a snapshot: ${e.message}`, 'error')) }),
    hangup: iconButton({ id: 'btn-hangup', icon: 'hangup', label: 'Leave', class: 'danger', onclick: () => hangUp() }),
  };
  btn.chat.append(h('span', { class: 'badge', id: 'unread', hidden: true, 'aria-label': 'unread messages' }));
  // Shortcuts need a modifier (WCAG 2.1.4): Alt+M and Alt+V, said on the buttons.
  btn.mic.setAttribute('aria-keyshortcuts', 'Alt+M');
  btn.cam.setAttribute('aria-keyshortcuts', 'Alt+V');
  for (const b of [btn.chat, btn.files, btn.stats, btn.settings]) b.setAttribute('aria-pressed', 'false');
  // Moderators (the admin grant) end the call for everyone; shown once joined says so.
  const endAll = h('span', { id: 'end-all-slot' });
  const group = (cls, ...els) => h('div', { class: 'group ' + cls }, ...els);
  controls.append(group('media', btn.mic, btn.cam, btn.share), group('tools', btn.chat, btn.files, btn.stats, btn.settings, btn.record, btn.snap), group('end', endAll, btn.hangup));
  // In the call, keyboard focus starts on its first control.
  btn.mic.focus();

  function updateButtons() {
    setButton(btn.mic, m.audioEnabled && m.mic ? 'mic' : 'micOff', !m.mic ? 'No mic' : m.audioEnabled ? 'Mute' : 'Unmute');
    btn.mic.classList.toggle('off', !m.audioEnabled || !m.mic);
    btn.mic.setAttribute('aria-pressed', String(!m.audioEnabled));
    setButton(btn.cam, m.videoEnabled && m.output ? 'cam' : 'camOff', !m.output ? 'Start video' : m.videoEnabled ? 'Stop video' : 'Start video');
    btn.cam.classList.toggle('off', !m.videoEnabled || !m.output);
    btn.cam.setAttribute('aria-pressed', String(!m.videoEnabled));
    setButton(btn.share, 'screen', m.sharing ? 'Stop share' : 'Share');
    btn.share.classList.toggle('on', m.sharing);
    setButton(btn.record, 'record', app.recorder.recording ? 'Stop rec' : 'Record');
    btn.record.classList.toggle('rec', app.recorder.recording);
    btn.record.setAttribute('aria-pressed', String(app.recorder.recording));
    recIndicator.hidden = !app.recorder.recording;
    if (!app.recorder.recording) { recIndicator.textContent = ''; delete recIndicator.dataset.seconds; }
  }
  updateButtons();

  async function toggleMic() {
    if (!m.mic) {
      try {
        await m.addMic();
        m.setAudioEnabled(true);
      } catch (e) {
        toast(describeMediaError(e).text, 'error');
        return;
      }
    } else m.setAudioEnabled(!m.audioEnabled);
    client.setMediaState({ audio: m.audioEnabled && !!m.mic });
    refreshSelf();
    updateButtons();
  }

  async function toggleCam() {
    if (!m.output) {
      try {
        app.want.video = true;
        m.setVideoEnabled(true);
        await m.switchCamera();
      } catch (e) {
        toast(describeMediaError(e).text, 'error');
        return;
      }
    } else m.setVideoEnabled(!m.videoEnabled);
    client.setMediaState({ video: m.videoEnabled && !!m.output });
    refreshSelf();
    updateButtons();
  }

  function shareMenu(ev) {
    const opener = /** @type {HTMLElement} */ (ev.currentTarget);
    const old = $('#share-menu');
    if (old) return old.remove();
    if (!navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia) return toast('This browser cannot share the screen.', 'error');
    const start = async (pip) => {
      menu.remove();
      opener.focus();
      try {
        await m.startScreen(pip);
        client.setMediaState({ screen: true });
      } catch (e) {
        if (e.name !== 'NotAllowedError') toast(`Screen sharing failed: ${e.message}`, 'error');
      }
      refreshSelf();
      updateButtons();
    };
    const menu = h('div', { id: 'share-menu', class: 'menu', role: 'menu' },
      m.sharing ? h('button', { type: 'button', role: 'menuitem', id: 'share-stop', onclick: () => { menu.remove(); opener.focus(); m.stopScreen(); } }, 'Stop sharing') : null,
      h('button', { type: 'button', role: 'menuitem', id: 'share-screen', onclick: () => start(false) }, 'Share screen'),
      h('button', { type: 'button', role: 'menuitem', id: 'share-pip', disabled: !m.camera, onclick: () => start(true) }, 'Screen + camera (picture-in-picture)'));
    const r = opener.getBoundingClientRect();
    menu.style.left = `${Math.max(8, r.left)}px`;
    menu.style.bottom = `${window.innerHeight - r.top + 8}px`;
    document.body.append(menu);
    /** @type {HTMLElement} */ (menu.querySelector('button:not([disabled])')).focus();
    const close = (e) => {
      if (!menu.contains(e.target) && e.target !== opener) {
        menu.remove();
        document.removeEventListener('pointerdown', close);
      }
    };
    document.addEventListener('pointerdown', close);
    menu.addEventListener('keydown', (e) => {
      if (e.key !== 'Escape') return;
      e.stopPropagation();
      menu.remove();
      document.removeEventListener('pointerdown', close);
      opener.focus();
    });
  }

  function toggleRecord() {
    if (app.recorder.recording) {
      app.recorder.stop();
      toast('Recording saved', 'ok');
      updateButtons();
      return;
    }
    recording().then(({ CallRecorder }) => {
      if (!(app.recorder instanceof CallRecorder)) {
        app.recorder = new CallRecorder(grid, app.room, (seconds) => {
          recIndicator.dataset.seconds = String(seconds);
          recIndicator.textContent = `REC ${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, '0')}`;
        });
      }
      const streams = [m.sendStream, ...[...client.peers.values()].map((p) => p.remoteStream)];
      app.recorder.start(streams);
      toast('Recording… press again to stop and download');
    }).catch((e) => toast(`Cannot record: ${e.message}`, 'error')).finally(updateButtons);
  }

  function hangUp() {
    if (app.recorder.recording) app.recorder.stop();
    client.leave();
    m.stop();
    app.stats.stop();
    notice(app, 'left', 'You left the call', 'The others no longer see you.', [
      h('button', { type: 'button', class: 'btn primary', id: 'rejoin', onclick: () => location.reload() }, 'Rejoin'),
      h('a', { class: 'btn', href: '/', text: 'Home' })]);
  }

  // Panel
  /** @type {Record<string, PanelBody>} */
  const panels = {
    chat: chatPanel(app, () => { app.unread = 0; updateUnread(); }),
    files: filesPanel(app),
    // Scrolls without a control in it: focusable so the keyboard scrolls it.
    stats: h('div', { class: 'panel-body', tabindex: 0, role: 'region', 'aria-label': 'Statistics per member' }, app.stats.root),
    settings: settingsPanel(app),
  };
  const titles = { chat: 'Chat', files: 'Files', stats: 'Statistics', settings: 'Settings' };
  function togglePanel(which) {
    const was = app.panel;
    const open = was === which ? '' : which;
    app.panel = open;
    panel.hidden = !open;
    root.classList.toggle('with-panel', !!open);
    for (const k of Object.keys(panels)) btn[k].setAttribute('aria-pressed', String(k === open));
    if (!open) {
      app.stats.setVisible(false);
      layout();
      // Focus goes back to the button that opened the panel.
      if (was && btn[was]) btn[was].focus();
      return;
    }
    panel.dataset.panel = open;
    const heading = h('h2', { text: titles[open], tabindex: -1 });
    panel.replaceChildren(h('div', { class: 'panel-head' }, heading,
      h('button', { type: 'button', class: 'btn ghost icon', id: 'panel-close', 'aria-label': 'Close panel', html: icons.close, onclick: () => togglePanel(open) })), panels[open]);
    app.stats.setVisible(open === 'stats');
    if (open === 'chat') {
      app.unread = 0;
      updateUnread();
      $('#chat-input').focus();
    } else heading.focus();
    if (open === 'settings') panels.settings.refresh();
    if (open === 'files') panels.files.refresh();
    layout();
  }
  app.togglePanel = togglePanel;
  function updateUnread() {
    const b = $('#unread');
    b.hidden = app.unread === 0;
    b.textContent = app.unread > 9 ? '9+' : String(app.unread);
  }
  client.addEventListener('chat', (e) => {
    const d = /** @type {CustomEvent} */ (e).detail;
    panels.chat.add(d);
    if (!d.self && app.panel !== 'chat') {
      app.unread++;
      updateUnread();
      announce(`${d.name} says: ${d.text}`);
    }
  });

  // Members
  const layout = () => layoutGrid(grid, stage);
  new ResizeObserver(layout).observe(stage);
  const updateCount = () => {
    const n = client.peers.size + 1;
    count.textContent = `${n} ${n === 1 ? 'person' : 'people'}`;
    count.prepend(h('span', { class: 'ico', html: icons.users }));
    grid.dataset.count = String(n);
    layout();
  };
  updateCount();
  client.addEventListener('peer-joined', (e) => {
    const p = /** @type {CustomEvent} */ (e).detail;
    const tile = makeTile(app, p, false);
    grid.append(tile);
    announce(`${p.name} joined`);
    if (app.moderate) app.moderate.decorateTile(app, tile);
    updateCount();
    panels.files.refresh();
  });
  client.addEventListener('peer-left', (e) => {
    const { peer, reason } = /** @type {CustomEvent} */ (e).detail;
    const t = grid.querySelector(`.tile[data-peer-id="${CSS.escape(peer.id)}"]`);
    if (t) t.remove();
    updateCount();
    panels.files.refresh();
    if (reason !== 'reconnect') toast(`${peer.name} left`);
  });
  client.addEventListener('peer-state', (e) => updateTile(app, /** @type {CustomEvent} */ (e).detail));
  client.addEventListener('track', (e) => {
    const { peer } = /** @type {CustomEvent} */ (e).detail;
    const t = grid.querySelector(`.tile[data-peer-id="${CSS.escape(peer.id)}"]`);
    if (!t) return;
    const v = t.querySelector('video');
    if (v.srcObject !== peer.remoteStream) v.srcObject = peer.remoteStream;
    v.play().catch(() => showUnmute(t, v));
    if (app.recorder.recording) app.recorder.addAudio(peer.remoteStream);
  });
  client.addEventListener('speaker', (e) => {
    const id = /** @type {CustomEvent} */ (e).detail.id;
    for (const t of grid.querySelectorAll('.tile.remote')) /** @type {HTMLElement} */ (t).classList.toggle('speaking', /** @type {HTMLElement} */ (t).dataset.peerId === id);
  });
  client.addEventListener('transfer', (e) => panels.files.add(/** @type {CustomEvent} */ (e).detail));
  groupView(app, { stage, controls, relayout: layout });

  // Moderation: the buttons for admins, and what moderators do to us.
  client.addEventListener('joined', () => {
    // The moderator's controls load only for members with the admin grant.
    if (client.grants.admin || app.moderate) {
      import('./moderate.js').then((mod) => {
        app.moderate = mod;
        mod.enable(app, endAll, grid);
      }).catch((err) => toast(`Moderation controls did not load: ${err.message}`));
    }
    // Admins record an sfu room on the server: a file per participant track.
    if (client.grants.admin && client.mode === 'sfu' && !document.querySelector('#btn-server-record')) {
      import('./record-server.js').then((rec) => btn.record.after(rec.roomRecordButton(app.room, app.token, (text) => toast(text))))
        .catch((err) => toast(`Server recording did not load: ${err.message}`));
    }
  });
  client.addEventListener('muted', (e) => {
    const { kind, by } = /** @type {CustomEvent} */ (e).detail;
    const who = (client.peers.get(by) || { name: 'A moderator' }).name;
    if (kind === 'video') {
      m.setVideoEnabled(false);
      client.setMediaState({ video: false });
    } else {
      m.setAudioEnabled(false);
      client.setMediaState({ audio: false });
    }
    refreshSelf();
    updateButtons();
    toast(`${who} muted your ${kind === 'video' ? 'camera' : 'microphone'}. Turn it back on when you are ready.`);
  });
  const sentAway = (title, text) => () => {
    if (app.recorder.recording) app.recorder.stop();
    m.stop();
    app.stats.stop();
    notice(app, 'left', title, text, [
      h('button', { type: 'button', class: 'btn primary', id: 'rejoin', onclick: () => location.reload() }, 'Rejoin'),
      h('a', { class: 'btn', href: '/', text: 'Home' })]);
  };
  client.addEventListener('removed', sentAway('You were removed from the call', 'A moderator took you out of this call.'));
  client.addEventListener('ended', sentAway('The call has ended', 'A moderator ended this call for everyone.'));

  // Connection state
  let countdown = 0;
  client.addEventListener('state', (e) => {
    const s = /** @type {CustomEvent} */ (e).detail.state;
    const text = { connecting: 'Connecting…', joined: client.transport === 'http' ? 'Connected (HTTP)' : 'Connected', reconnecting: 'Reconnecting…', left: 'Left', closed: 'Disconnected' }[s] || s;
    if (conn.dataset.state !== s && s !== 'left') announce(text);
    conn.dataset.state = s;
    connText.textContent = text;
    conn.title = text;
    if (s === 'joined') {
      if (!banner.hidden) toast('Reconnected', 'ok');
      banner.hidden = true;
      clearInterval(countdown);
    }
  });
  client.addEventListener('reconnecting', (e) => {
    const d = /** @type {CustomEvent} */ (e).detail;
    clearInterval(countdown);
    const secs = h('strong', { id: 'countdown' });
    const tick = () => {
      const left = Math.max(0, Math.ceil((d.at - Date.now()) / 1000));
      secs.textContent = left ? `${left} s` : 'now';
    };
    tick();
    countdown = setInterval(tick, 250);
    banner.hidden = false;
    banner.dataset.kind = 'reconnecting';
    banner.replaceChildren(h('span', { class: 'ico', html: icons.warn }),
      h('div', {}, h('strong', { text: d.restarting ? 'The server is restarting.' : client.id ? 'Lost the connection to the server.' : 'Cannot reach the Parley server.' }),
        h('span', {}, ' Retrying in ', secs, ` (attempt ${d.attempt}).`)),
      h('button', { type: 'button', class: 'btn small', id: 'retry-now', onclick: () => client.reconnectNow() }, 'Retry now'));
  });
  client.addEventListener('error', (e) => {
    const d = /** @type {CustomEvent} */ (e).detail;
    if (!d.fatal) toast(d.message, 'error');
  });

  client.join().then(() => {
    performance.mark('parley:joined');
  }, (err) => {
    clearInterval(countdown);
    m.stop();
    app.stats.stop();
    const code = err.code || 'error';
    if (code === 'left') return;
    if (code === 'full') {
      notice(app, 'full', 'This room is full', `“${app.room}” has reached its capacity. Try again later, or start a new room.`, [
        h('button', { type: 'button', class: 'btn primary', id: 'retry-join', onclick: () => location.reload() }, 'Try again'),
        h('a', { class: 'btn', href: '/r/', text: 'New room' })]);
    } else if (code === 'unauthorized' || code === 'forbidden') {
      tokenNotice(app, err);
    } else {
      notice(app, 'error', 'Could not join the call', err.message, [
        h('button', { type: 'button', class: 'btn primary', onclick: () => location.reload() }, 'Try again'),
        h('a', { class: 'btn', href: '/', text: 'Home' })]);
    }
  });
  window.addEventListener('pagehide', () => client.state === 'joined' && client.leave());
  window.addEventListener('keydown', (e) => {
    if (client.state === 'left' || !root.isConnected) return;
    if (e.key === 'Escape' && app.panel && !e.defaultPrevented) {
      e.preventDefault();
      togglePanel(app.panel);
      return;
    }
    // Alt+M and Alt+V (by key position, as Alt changes the character on some systems).
    if (!e.altKey || e.ctrlKey || e.metaKey || e.shiftKey) return;
    if (e.code === 'KeyM') {
      e.preventDefault();
      toggleMic();
    } else if (e.code === 'KeyV') {
      e.preventDefault();
      toggleCam();
    }
  });
}

/** Lays the grid out so that 16:9 tiles are as large as the stage allows. */
function layoutGrid(grid, stage) {
  const n = grid.children.length || 1;
  const W = stage.clientWidth - 24, H = stage.clientHeight - 24, gap = 12;
  let best = { cols: 1, w: 0 };
  for (let cols = 1; cols <= n; cols++) {
    const rows = Math.ceil(n / cols);
    const w = Math.min((W - gap * (cols - 1)) / cols, ((H - gap * (rows - 1)) / rows) * (16 / 9));
    if (w > best.w) best = { cols, w };
  }
  grid.style.setProperty('--cols', String(best.cols));
  grid.style.setProperty('--tile-w', `${Math.max(120, Math.floor(best.w))}px`);
}

/** @param {{id: string, name: string, identity?: string, verified?: boolean}} p @param {boolean} self */
function makeTile(app, p, self) {
  const video = h('video', { autoplay: true, playsInline: true, muted: self });
  const tile = h('div', { class: `tile ${self ? 'self' : 'remote'}`, 'data-peer-id': p.id, 'data-name': p.name, 'data-state': self ? 'connected' : 'connecting', 'data-video-muted': 'false', 'data-audio-muted': 'false', 'data-has-video': 'false', tabindex: 0, 'aria-label': p.name },
    video,
    h('div', { class: 'avatar' }, h('span', { text: initials(p.name) })),
    h('div', { class: 'label' }, h('span', { class: 'mic-off', title: 'Microphone muted', html: icons.micOff }), h('span', { class: 'name', text: p.name }), p.verified ? verifiedMark(p.identity || '') : null),
    h('div', { class: 'tile-status', role: 'status' }));
  const avatar = $('.avatar span', tile);
  avatar.style.setProperty('--h', String(hue(p.name)));
  const onFrame = () => {
    tile.dataset.hasVideo = 'true';
    if (!self && app.awaitingFirstFrame) {
      app.awaitingFirstFrame = false;
      performance.measure('parley:join-to-first-frame', 'parley:join');
    }
  };
  // @ts-ignore
  if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(onFrame);
  video.addEventListener('loadeddata', onFrame);
  video.addEventListener('resize', () => { tile.classList.toggle('portrait', video.videoHeight > video.videoWidth); });
  if (!self && app.media.settings.speaker && video.setSinkId) video.setSinkId(app.media.settings.speaker).catch(() => {});
  if (!self) updateTile(app, /** @type {Peer} */ (p), tile);
  return tile;
}

/** @param {Peer} p @param {HTMLElement} [tile] */
function updateTile(app, p, tile) {
  tile = tile || app.grid.querySelector(`.tile[data-peer-id="${CSS.escape(p.id)}"]`);
  if (!tile) return;
  const st = p.connectionState;
  tile.dataset.state = st;
  tile.dataset.name = p.name;
  tile.dataset.relay = String(p.relay);
  tile.setAttribute('aria-label', p.verified ? `${p.name}, verified as ${p.identity}` : p.name);
  tile.querySelector('.name').textContent = p.name;
  tile.querySelector('.avatar span').textContent = initials(p.name);
  tile.dataset.videoMuted = String(!p.media.video);
  tile.dataset.audioMuted = String(!p.media.audio);
  tile.dataset.screen = String(p.media.screen);
  if (app.moderate && tile.querySelector('.mod')) app.moderate.decorateTile(app, tile); // the name may have changed
  const status = tile.querySelector('.tile-status');
  if (st === 'failed') {
    status.replaceChildren(h('div', { class: 'fail', role: 'alert' },
      h('p', { text: `Could not connect to ${p.name}.` }),
      h('p', { class: 'hint', text: 'A firewall may block direct connections. Relaying through the server usually works.' }),
      h('button', { type: 'button', class: 'btn primary small retry-relay', onclick: () => p.retryRelay() }, 'Retry through relay')));
  } else if (st === 'new' || st === 'connecting') {
    status.replaceChildren(h('span', { class: 'spinner', 'aria-hidden': 'true' }), h('span', { text: p.relay ? 'Connecting via relay…' : 'Connecting…' }));
  } else if (st === 'disconnected') {
    status.replaceChildren(h('span', { class: 'spinner', 'aria-hidden': 'true' }), h('span', { text: 'Connection interrupted…' }));
  } else status.replaceChildren();
}

function showUnmute(tile, video) {
  if (tile.querySelector('.unmute')) return;
  const b = h('button', { type: 'button', class: 'btn primary small unmute', onclick: () => { video.play().then(() => b.remove(), () => {}); } }, 'Click to hear the call');
  tile.append(b);
}

// ---------------------------------------------------------------------------
// Panels

function chatPanel(app, onOpen) {
  const list = h('ol', { id: 'chat-list', class: 'chat-list', 'aria-live': 'polite' });
  const empty = h('p', { class: 'empty', text: 'No messages yet. Say hello!' });
  const input = /** @type {HTMLInputElement} */ (h('input', { id: 'chat-input', maxlength: 4000, autocomplete: 'off', placeholder: 'Message everyone', 'aria-label': 'Message' }));
  const form = h('form', { class: 'chat-form', onsubmit: (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    app.client.chat(text);
    input.value = '';
  } }, input, h('button', { type: 'submit', class: 'btn primary', id: 'chat-send' }, h('span', { class: 'ico', html: icons.send }), h('span', { class: 'lbl', text: 'Send' })));
  /** @type {PanelBody} */
  const el = h('div', { class: 'panel-body chat' }, empty, list, form);
  el.add = (d) => {
    empty.hidden = true;
    const li = h('li', { class: `msg ${d.self ? 'mine' : ''}`, 'data-from': d.name },
      h('div', { class: 'msg-meta' }, h('span', { class: 'msg-name', text: d.self ? 'You' : d.name }), h('time', { class: 'msg-time', text: clock(d.ts), datetime: new Date(d.ts).toISOString() })),
      h('div', { class: 'msg-text', text: d.text }));
    $('.msg-name', li).style.setProperty('--h', String(hue(d.name)));
    list.append(li);
    list.scrollTop = list.scrollHeight;
  };
  void onOpen;
  return el;
}

function filesPanel(app) {
  const to = /** @type {HTMLSelectElement} */ (h('select', { id: 'file-to', 'aria-label': 'Send to' }));
  const input = /** @type {HTMLInputElement} */ (h('input', { type: 'file', id: 'file-input', multiple: true, class: 'sr-only', onchange: () => send() }));
  const list = h('ol', { id: 'transfers', class: 'transfers' });
  const limit = h('p', { class: 'hint', id: 'file-limit' });
  /** @type {PanelBody} */
  const el = h('div', { class: 'panel-body files' },
    h('div', { class: 'field' }, h('label', { for: 'file-to', text: 'Send to' }), to),
    h('label', { for: 'file-input', class: 'btn primary drop', tabindex: 0, onkeydown: (e) => (e.key === 'Enter' || e.key === ' ') && (e.preventDefault(), input.click()) },
      h('span', { class: 'ico', html: icons.file }), 'Choose files to send…'), input, limit, list);
  async function send() {
    const files = [...(input.files || [])];
    input.value = '';
    for (const f of files) {
      try {
        const trs = await app.client.sendFile(f, to.value || undefined);
        if (!trs.length) toast('Nobody to send to yet.', 'error');
      } catch (e) {
        toast(e.message, 'error');
      }
    }
  }
  el.addEventListener('dragover', (e) => e.preventDefault());
  el.addEventListener('drop', (e) => {
    e.preventDefault();
    for (const f of e.dataTransfer.files) app.client.sendFile(f, to.value || undefined).catch((err) => toast(err.message, 'error'));
  });
  el.refresh = () => {
    const cur = to.value;
    to.replaceChildren(h('option', { value: '', text: 'Everyone' }), ...[...app.client.peers.values()].map((p) => h('option', { value: p.id, text: p.name, selected: p.id === cur })));
    limit.textContent = `Up to ${formatBytes(app.client.maxFileSize)} per file. Files go directly to the other browser and are checked with SHA-256.`;
  };
  /** @param {Transfer} tr */
  el.add = (tr) => {
    app.transfers.push(tr);
    const bar = h('div', { class: 'bar' }, h('i'));
    const info = h('span', { class: 'tr-info' });
    const action = h('div', { class: 'tr-actions' });
    const li = h('li', { class: `transfer ${tr.direction}`, 'data-id': `${tr.peer.id}-${tr.id}`, 'data-direction': tr.direction, 'data-state': tr.state, 'data-progress': '0' },
      h('div', { class: 'tr-head' }, h('span', { class: 'tr-dir', text: tr.direction === 'out' ? `To ${tr.peer.name}` : `From ${tr.peer.name}` }), h('strong', { class: 'tr-name', text: tr.name })),
      h('div', { class: 'progress', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-label': `Transfer of ${tr.name}` }, bar), info, action);
    const cancel = h('button', { type: 'button', class: 'btn small ghost cancel', onclick: () => tr.cancel() }, 'Cancel');
    let last = 0;
    let shown = null;
    const paint = (force) => {
      const now = performance.now();
      if (!force && now - last < 100) return;
      last = now;
      const pct = Math.floor(tr.progress * 100);
      li.dataset.progress = String(pct);
      li.dataset.state = tr.state;
      li.querySelector('.progress').setAttribute('aria-valuenow', String(pct));
      /** @type {HTMLElement} */ (bar.firstChild).style.width = `${pct}%`;
      const words = { sending: 'Sending', receiving: 'Receiving', verifying: tr.direction === 'in' ? 'Checking SHA-256' : 'Waiting for the receiver’s check', done: tr.direction === 'in' ? 'Received, SHA-256 verified' : 'Delivered, SHA-256 verified', failed: 'Failed', cancelled: 'Cancelled' };
      info.textContent = `${pct} % · ${formatBytes(tr.bytes)} of ${formatBytes(tr.size)}${tr.active && tr.speed ? ` · ${formatBytes(Math.round(tr.speed))}/s` : ''} · ${words[tr.state] || tr.state}${tr.error ? ` (${tr.error})` : ''}`;
      const kind = tr.active ? 'cancel' : tr.state === 'done' && tr.url ? 'download' : '';
      if (kind === shown) return;
      shown = kind;
      if (kind === 'cancel') action.replaceChildren(cancel);
      else if (kind === 'download') action.replaceChildren(h('a', { class: 'btn small primary download-link', href: tr.url, download: tr.name, 'data-sha256': tr.received256 || '' }, 'Download'));
      else action.replaceChildren();
    };
    tr.addEventListener('progress', () => paint(false));
    tr.addEventListener('state', () => paint(true));
    paint(true);
    list.prepend(li);
    if (tr.direction === 'in' && app.panel !== 'files') toast(`${tr.peer.name} is sending you ${tr.name} — open Files`, 'info');
  };
  return el;
}

function settingsPanel(app) {
  /** @type {PanelBody} */
  const el = h('div', { class: 'panel-body settings' });
  el.refresh = async () => {
    const d = await app.media.devices().catch(() => ({ cams: [], mics: [], speakers: [] }));
    const bitrate = h('select', { id: 'bitrate-select', onchange: (e) => {
      const kbps = Number(e.target.value);
      store.set('bitrate', String(kbps));
      app.client.setMaxBitrate(kbps * 1000);
      toast(kbps ? `Video capped at ${kbps} kbps` : 'Video bitrate unlimited', 'ok');
    } }, ...BITRATES.map(([v, t]) => h('option', { value: v, text: t, selected: Number(v) * 1000 === app.client.maxBitrate })));
    const effect = h('select', { id: 'effect-select', onchange: (e) => {
      app.media.setEffect(e.target.value);
      store.set('effect', e.target.value);
    } }, ...Object.entries(EFFECTS).map(([v, t]) => h('option', { value: v, text: t, selected: v === app.media.settings.effect })));
    const maxMB = h('input', { id: 'max-file-mb', type: 'number', min: 1, max: 4096, value: Math.round(app.client.maxFileSize / 1048576), onchange: (e) => {
      const mb = Math.max(1, Math.min(4096, Number(e.target.value) || 512));
      app.client.maxFileSize = mb * 1048576;
      store.set('maxFileMB', String(mb));
    } });
    const field = (id, label, ctl, hint) => h('div', { class: 'field' }, h('label', { for: id, text: label }), ctl, hint ? h('p', { class: 'hint', text: hint }) : null);
    el.replaceChildren(
      h('h3', { text: 'Devices' }), ...deviceSelects(app, d, true),
      h('h3', { text: 'Video' }),
      field('effect-select', 'Effect on my camera', effect),
      field('bitrate-select', 'Maximum video bitrate', bitrate, 'Applied to what you send, without interrupting the call.'),
      h('h3', { text: 'Files' }),
      field('max-file-mb', 'Largest file to receive (MiB)', maxMB),
      h('h3', { text: 'Connection' }),
      h('p', { class: 'hint', text: `Signaling: ${app.client.transport || '—'} · ICE: ${app.relay ? 'relay only' : 'direct, relay as fallback'}` }),
      h('button', { type: 'button', class: 'btn', id: 'relay-all', onclick: () => { for (const p of app.client.peers.values()) p.retryRelay(); toast('Reconnecting through the relay', 'ok'); } }, 'Reconnect everyone through the relay'));
  };
  return el;
}

// ---------------------------------------------------------------------------
// Notices

function notice(app, kind, title, text, actions) {
  const heading = h('h1', { text: title, tabindex: -1 });
  document.getElementById('app').replaceChildren(h('main', { class: 'center' },
    h('div', { id: 'notice', class: `card notice ${kind}`, 'data-kind': kind, role: 'alert' },
      h('span', { class: 'notice-ico', html: kind === 'left' ? icons.hangup : icons.warn }),
      heading, h('p', { text }), h('div', { class: 'row wrap center-row' }, ...actions))));
  // The page changed under the focus: it goes to the new page's heading.
  heading.focus();
}

function tokenNotice(app, err) {
  const input = /** @type {HTMLInputElement} */ (h('input', { id: 'token-input', autocomplete: 'off', placeholder: 'Paste your access token', value: '' }));
  const wrong = !!app.token;
  notice(app, 'token', wrong ? 'That access token was not accepted' : 'This room needs an access token',
    wrong ? `The server said: ${err.message}. Check the token, or ask whoever invited you for a new one.` : 'Ask whoever invited you for a token, or for a link that includes one.', [
      h('form', { class: 'row wrap', onsubmit: (e) => {
        e.preventDefault();
        const t = input.value.trim();
        if (!t) return input.focus();
        sessionStorage.setItem('parley.token.' + app.room, t);
        const u = new URL(location.href);
        u.searchParams.delete('token');
        location.href = u.toString();
      } }, h('label', { for: 'token-input', class: 'sr-only', text: 'Access token' }), input, h('button', { type: 'submit', class: 'btn primary', id: 'token-join' }, 'Join'))]);
  if (wrong) sessionStorage.removeItem('parley.token.' + app.room);
  input.focus();
}

export { download };
