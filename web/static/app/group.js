// @ts-check
// Group-call view for the call page, in both room modes:
//  - layout: "speaker" (the active speaker, or a pinned tile, large; the
//    others in a strip) or "grid"; the user's choice, remembered;
//  - in server-routed rooms, each remote tile asks the server for the
//    simulcast layer that fits its size, and off-screen tiles (or a hidden
//    page) pause their video;
//  - a connection-quality indicator on each remote tile, from loss, round
//    trip and what arrives.
import { h, icons, iconButton, setButton, store, toast } from './ui.js';

/** Layer for a tile of width w CSS px (the publisher sends 1/4, 1/2 and full size of e.g. 1280). */
export function layerFor(w) {
  const px = w * Math.min(window.devicePixelRatio || 1, 2);
  if (px <= 400) return 'low';
  if (px <= 800) return 'medium';
  return 'high';
}

const BARS = '<svg viewBox="0 0 16 16" aria-hidden="true"><rect x="1" y="10" width="3.4" height="5" rx="1"/><rect x="6.3" y="6" width="3.4" height="9" rx="1"/><rect x="11.6" y="2" width="3.4" height="13" rx="1"/></svg>';
const GRID = '<svg viewBox="0 0 24 24" aria-hidden="true" fill="none" stroke="currentColor" stroke-width="2"><rect x="3" y="3" width="8" height="8" rx="1.5"/><rect x="13" y="3" width="8" height="8" rx="1.5"/><rect x="3" y="13" width="8" height="8" rx="1.5"/><rect x="13" y="13" width="8" height="8" rx="1.5"/></svg>';
const SPEAKER = '<svg viewBox="0 0 24 24" aria-hidden="true" fill="none" stroke="currentColor" stroke-width="2"><rect x="2" y="3" width="20" height="13" rx="1.5"/><rect x="3" y="18" width="5" height="3" rx="1"/><rect x="9.5" y="18" width="5" height="3" rx="1"/><rect x="16" y="18" width="5" height="3" rx="1"/></svg>';
icons.grid = GRID;
icons.speaker = SPEAKER;

/**
 * @param {any} app the call page's state (app.client, app.grid)
 * @param {{stage: HTMLElement, controls: HTMLElement, relayout: () => void}} o
 */
export function groupView(app, o) {
  const client = app.client;
  const grid = /** @type {HTMLElement} */ (app.grid);
  const view = {
    /** the user's choice; '' = speaker view in group (sfu) rooms, grid in small calls */
    chosen: store.get('layout', ''),
    layout: /** @type {'speaker'|'grid'} */ ('grid'),
    speaker: '',
    pinned: '',
    featured: '',
    /** @type {Map<string, {quality: string, paused: boolean, width: number, visible: boolean}>} */
    tiles: new Map(),
    /** @type {Map<string, any>} per member: last quality sample */
    quality: new Map(),
  };
  app.group = view;

  // --- layout button
  const btn = iconButton({ id: 'btn-layout', icon: view.layout === 'speaker' ? 'grid' : 'speaker', label: '', onclick: () => setLayout(view.layout === 'speaker' ? 'grid' : 'speaker') });
  const tools = o.controls.querySelector('.group.tools');
  if (tools) tools.prepend(btn);
  const paintButton = () => {
    setButton(btn, view.layout === 'speaker' ? 'grid' : 'speaker', view.layout === 'speaker' ? 'Grid view' : 'Speaker view');
    btn.dataset.layout = view.layout;
  };

  /** @param {'speaker'|'grid'} l */
  function setLayout(l) {
    view.chosen = l;
    store.set('layout', l);
    paintButton();
    arrange();
  }

  /** Which remote tile is large in speaker layout. */
  function pickFeatured() {
    const ids = [...grid.querySelectorAll('.tile.remote')].map((t) => /** @type {HTMLElement} */ (t).dataset.peerId);
    if (view.pinned && ids.includes(view.pinned)) return view.pinned;
    if (view.speaker && ids.includes(view.speaker)) return view.speaker;
    if (view.featured && ids.includes(view.featured)) return view.featured;
    // Someone presenting beats the first to arrive.
    const sharing = grid.querySelector('.tile.remote[data-screen="true"]');
    if (sharing) return /** @type {HTMLElement} */ (sharing).dataset.peerId;
    return ids[0] || '';
  }

  function arrange() {
    view.layout = view.chosen === 'grid' || view.chosen === 'speaker' ? view.chosen : client.mode === 'sfu' ? 'speaker' : 'grid';
    paintButton();
    const speakerLayout = view.layout === 'speaker' && grid.querySelectorAll('.tile.remote').length > 0;
    view.featured = speakerLayout ? pickFeatured() : '';
    grid.classList.toggle('speaker-layout', speakerLayout);
    grid.dataset.layout = speakerLayout ? 'speaker' : 'grid';
    for (const t of grid.querySelectorAll('.tile')) {
      const el = /** @type {HTMLElement} */ (t);
      const f = speakerLayout && el.dataset.peerId === view.featured;
      el.classList.toggle('featured', f);
      el.classList.toggle('pinned', f && view.pinned === view.featured);
    }
    if (speakerLayout) sizeSpeaker();
    else o.relayout();
    // Sizes changed: the observers re-evaluate layers.
  }

  /** Featured tile as large as fits above a strip of thumbnails. */
  function sizeSpeaker() {
    const W = o.stage.clientWidth - 24, H = o.stage.clientHeight - 24;
    const others = grid.children.length - 1;
    const thumbW = Math.max(120, Math.min(220, Math.floor((W - 12 * Math.max(0, others - 1)) / Math.max(1, others))));
    const stripH = others > 0 ? Math.round((thumbW * 9) / 16) + 12 : 0;
    const featW = Math.max(160, Math.floor(Math.min(W, (H - stripH) * (16 / 9))));
    grid.style.setProperty('--feat-w', `${featW}px`);
    grid.style.setProperty('--thumb-w', `${thumbW}px`);
  }
  new ResizeObserver(() => {
    if (grid.classList.contains('speaker-layout')) sizeSpeaker();
  }).observe(o.stage);

  // --- speaker
  client.addEventListener('speaker', (e) => {
    const id = /** @type {CustomEvent} */ (e).detail.id;
    grid.dataset.speaker = id || '';
    if (!id || id === client.id) return; // our own voice does not move the view
    view.speaker = id;
    if (view.layout === 'speaker' && !view.pinned && id !== view.featured) arrange();
  });
  grid.addEventListener('click', (e) => {
    const t = /** @type {HTMLElement} */ (e.target).closest('.tile.remote');
    if (!t || /** @type {HTMLElement} */ (e.target).closest('button')) return;
    const id = /** @type {HTMLElement} */ (t).dataset.peerId;
    if (view.layout !== 'speaker') {
      view.pinned = id;
      setLayout('speaker');
      return;
    }
    view.pinned = view.pinned === id ? '' : id;
    arrange();
    toast(view.pinned ? `${t.getAttribute('aria-label')} pinned` : 'Following the active speaker');
  });

  // --- layers and pause (sfu rooms)
  const io = new IntersectionObserver((entries) => {
    for (const en of entries) {
      const el = /** @type {HTMLElement} */ (en.target);
      const st = view.tiles.get(el.dataset.peerId);
      if (st) st.visible = en.isIntersecting;
    }
    applyLayers();
  }, { threshold: 0 });
  const ro = new ResizeObserver((entries) => {
    for (const en of entries) {
      const el = /** @type {HTMLElement} */ (en.target);
      const st = view.tiles.get(el.dataset.peerId);
      if (st) st.width = el.clientWidth;
    }
    applyLayers();
  });
  function track(t) {
    const id = t.dataset.peerId;
    if (!id || view.tiles.has(id)) return;
    view.tiles.set(id, { quality: '', paused: false, width: t.clientWidth, visible: true });
    io.observe(t);
    ro.observe(t);
    addIndicator(t);
  }
  function untrack(id) {
    view.tiles.delete(id);
    view.quality.delete(id);
    if (view.pinned === id) view.pinned = '';
    if (view.speaker === id) view.speaker = '';
  }
  let layerTimer = 0;
  function applyLayers() {
    clearTimeout(layerTimer);
    // A short settle time: layouts move in bursts.
    layerTimer = setTimeout(() => {
      const link = client.link;
      for (const [id, st] of view.tiles) {
        const t = /** @type {HTMLElement|null} */ (grid.querySelector(`.tile[data-peer-id="${CSS.escape(id)}"]`));
        if (!t) continue;
        const paused = !st.visible || document.visibilityState === 'hidden';
        const quality = layerFor(st.width || t.clientWidth);
        t.dataset.layer = paused ? 'paused' : quality;
        if (!link || !link.prefer) continue;
        if (st.quality === quality && st.paused === paused) continue;
        st.quality = quality;
        st.paused = paused;
        link.prefer(id, /** @type {any} */ (quality), paused);
      }
    }, 150);
  }
  document.addEventListener('visibilitychange', applyLayers);
  client.addEventListener('joined', () => {
    // A new link after a reconnect knows nothing of our wishes.
    for (const st of view.tiles.values()) st.quality = '';
    applyLayers();
    showMode();
    arrange();
  });

  new MutationObserver(() => {
    const present = new Set();
    for (const t of grid.querySelectorAll('.tile.remote')) {
      const el = /** @type {HTMLElement} */ (t);
      present.add(el.dataset.peerId);
      track(el);
    }
    for (const id of [...view.tiles.keys()]) if (!present.has(id)) untrack(id);
    arrange();
    applyLayers();
  }).observe(grid, { childList: true });

  // --- connection quality
  function addIndicator(t) {
    const label = t.querySelector('.label');
    if (!label || label.querySelector('.q-ind')) return;
    label.append(h('span', { class: 'q-ind', 'data-q': 'unknown', title: 'Connection quality', role: 'img', 'aria-label': 'Connection quality: measuring', html: BARS }));
  }
  const prevIn = new Map();
  async function measure() {
    const peers = [...client.peers.values()];
    if (!peers.length) return;
    /** @type {Map<RTCPeerConnection, RTCStatsReport>} */
    const reports = new Map();
    for (const p of peers) {
      const pc = p.pc;
      if (pc && !reports.has(pc)) reports.set(pc, await pc.getStats().catch(() => null));
    }
    const now = performance.now();
    for (const p of peers) {
      const r = p.pc && reports.get(p.pc);
      const t = grid.querySelector(`.tile[data-peer-id="${CSS.escape(p.id)}"]`);
      if (!r || !t) continue;
      const ids = new Set(p.remoteStream ? p.remoteStream.getTracks().map((x) => x.id) : []);
      const sfu = !!client.link;
      let recv = 0, lost = 0, bytes = 0, vbytes = 0, fps = 0, video = false;
      /** @type {number|null} */
      let rtt = null;
      r.forEach((s) => {
        if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded' && s.currentRoundTripTime != null) rtt = s.currentRoundTripTime * 1000;
        if (s.type !== 'inbound-rtp' || (sfu && !ids.has(s.trackIdentifier))) return;
        recv += s.packetsReceived || 0;
        lost += Math.max(0, s.packetsLost || 0);
        bytes += s.bytesReceived || 0;
        if (s.kind === 'video') {
          video = true;
          vbytes += s.bytesReceived || 0;
          fps = Math.max(fps, s.framesPerSecond || 0);
        }
      });
      const prev = prevIn.get(p.id);
      prevIn.set(p.id, { recv, lost, bytes, vbytes, at: now });
      if (!prev) continue;
      const dr = recv - prev.recv, dl = lost - prev.lost, dt = (now - prev.at) / 1000;
      const loss = dr + dl > 0 ? (100 * Math.max(0, dl)) / (dr + dl) : 0;
      const kbps = dt > 0 ? ((bytes - prev.bytes) * 8) / dt / 1000 : 0;
      const vkbps = dt > 0 ? ((vbytes - prev.vbytes) * 8) / dt / 1000 : 0;
      const tileEl = /** @type {HTMLElement} */ (t);
      const expectVideo = video && tileEl.dataset.videoMuted !== 'true' && tileEl.dataset.layer !== 'paused';
      const stalled = p.connectionState === 'connected' && dr === 0;
      // Network only: loss, round trip, and video that should flow but
      // (nearly) does not. A slow frame rate alone is usually the sender's
      // CPU, not the connection.
      let q = 'good';
      if (p.connectionState !== 'connected' || stalled || loss >= 10 || (rtt != null && rtt >= 500) || (expectVideo && vkbps < 8)) q = 'poor';
      else if (loss >= 3 || (rtt != null && rtt >= 250) || (expectVideo && vkbps < 25)) q = 'fair';
      const s = { q, loss: Math.round(loss * 10) / 10, rtt: rtt == null ? null : Math.round(rtt), kbps: Math.round(kbps), fps: Math.round(fps) };
      view.quality.set(p.id, s);
      const ind = /** @type {HTMLElement|null} */ (t.querySelector('.q-ind'));
      if (!ind) continue;
      ind.dataset.q = q;
      const words = { good: 'good', fair: 'fair', poor: 'poor' }[q];
      const detail = `loss ${s.loss} %, round trip ${s.rtt == null ? '—' : s.rtt + ' ms'}, ${s.kbps} kbit/s${video ? `, ${s.fps} fps` : ''}`;
      ind.setAttribute('aria-label', `Connection quality: ${words}`);
      ind.title = `Connection ${words}: ${detail}`;
    }
  }
  setInterval(() => measure().catch(() => {}), 2000);

  // --- mode pill
  function showMode() {
    let pill = document.getElementById('room-mode');
    if (!pill) {
      pill = h('span', { id: 'room-mode', class: 'pill mode' });
      const right = document.querySelector('.topbar .top-right');
      if (right) right.prepend(pill);
    }
    const sfu = client.mode === 'sfu';
    pill.dataset.mode = client.mode;
    pill.textContent = sfu ? 'Group · server-routed' : 'Peer-to-peer';
    pill.title = sfu ? 'Media goes through the server: one connection each, good for large groups.' : 'Media goes directly between browsers.';
  }

  paintButton();
  arrange();
  return view;
}
