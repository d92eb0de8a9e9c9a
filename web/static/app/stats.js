// @ts-check
// Live per-member statistics: sampled every second from getStats, kept for
// HISTORY seconds and drawn as bitrate and packets-per-second graphs.
import { h, $ } from './ui.js';

export const HISTORY = 180; // seconds of history per member

/** @typedef {import('../parley.js').Peer} Peer */
/** @typedef {import('../parley.js').PeerStats} PeerStats */

export class StatsBoard {
  /** @param {import('../parley.js').Client} client */
  constructor(client) {
    this.client = client;
    /** @type {Map<string, PeerStats[]>} */
    this.history = new Map();
    /** @type {Map<string, HTMLElement>} */
    this.cards = new Map();
    this.root = h('div', { class: 'stats', id: 'stats' },
      h('p', { class: 'empty', text: 'Statistics appear here when someone joins.' }));
    this.visible = false;
    this.timer = setInterval(() => this.tick(), 1000);
  }

  stop() {
    clearInterval(this.timer);
  }

  async tick() {
    const peers = [...this.client.peers.values()];
    for (const id of this.history.keys()) if (!this.client.peers.has(id)) this.forget(id);
    await Promise.all(peers.map(async (p) => {
      if (p.closed || p.pc.connectionState === 'closed') return;
      try {
        const s = await p.sample();
        const hist = this.history.get(p.id) || [];
        hist.push(s);
        if (hist.length > HISTORY) hist.shift();
        this.history.set(p.id, hist);
        if (this.visible) this.render(p, hist);
      } catch {
        /* peer closing */
      }
    }));
  }

  /** @param {string} id */
  forget(id) {
    this.history.delete(id);
    const c = this.cards.get(id);
    if (c) c.remove();
    this.cards.delete(id);
    $('.empty', this.root).hidden = this.cards.size > 0;
  }

  /** Latest sample for a member. @param {string} id */
  latest(id) {
    const hist = this.history.get(id);
    return hist ? hist[hist.length - 1] : null;
  }

  /** @param {boolean} on */
  setVisible(on) {
    this.visible = on;
    if (on) for (const p of this.client.peers.values()) {
      const hist = this.history.get(p.id);
      if (hist) this.render(p, hist);
    }
  }

  /** @param {Peer} p @param {PeerStats[]} hist */
  render(p, hist) {
    let card = this.cards.get(p.id);
    if (!card) {
      card = h('section', { class: 'stat-card', 'data-peer-id': p.id },
        h('header', {}, h('strong', { class: 'who' }), h('span', { class: 'chip path' })),
        h('dl', { class: 'kv' }),
        h('div', { class: 'graph-title' }, h('span', { text: 'Bitrate (kbps)' }), h('span', { class: 'legend', html: '<i class="in"></i>in <i class="out"></i>out' })),
        h('canvas', { class: 'graph bitrate', width: 600, height: 120, 'aria-label': 'Bitrate graph' }),
        h('div', { class: 'graph-title' }, h('span', { text: 'Packets per second' }), h('span', { class: 'legend', html: '<i class="in"></i>in <i class="out"></i>out' })),
        h('canvas', { class: 'graph pps', width: 600, height: 90, 'aria-label': 'Packets per second graph' }));
      this.cards.set(p.id, card);
      this.root.append(card);
      $('.empty', this.root).hidden = true;
    }
    const s = hist[hist.length - 1];
    const vin = s.in.video, ain = s.in.audio, vout = s.out.video, aout = s.out.audio;
    card.querySelector('.who').textContent = p.name;
    const path = $('.path', card);
    const type = s.candidate ? s.candidate.local === 'relay' || s.candidate.remote === 'relay' ? 'relay' : s.candidate.local : '';
    path.textContent = type ? `${type}${s.candidate.protocol ? ' · ' + s.candidate.protocol : ''}` : p.pc.connectionState;
    path.dataset.type = type;
    card.dataset.candidate = type;
    const kbps = (x) => (x ? `${Math.round(x.kbps)} kbps` : '—');
    const rows = [
      ['Path', s.candidate ? `${s.candidate.local} → ${s.candidate.remote}` : '—', 'candidate'],
      ['RTT', s.rtt != null ? `${s.rtt.toFixed(1)} ms` : '—', 'rtt'],
      ['Loss', vin || ain ? `${lossPct(hist[hist.length - 2], s).toFixed(2)} %` : '—', 'loss'],
      ['Jitter', vin || ain ? `${(((vin || ain).jitter || 0) * 1000).toFixed(1)} ms` : '—', 'jitter'],
      ['Video in', vin ? `${kbps(vin)} · ${vin.codec || '?'} · ${vin.width}×${vin.height} @ ${Math.round(vin.fps)} fps` : '—', 'video-in'],
      ['Audio in', ain ? `${kbps(ain)} · ${ain.codec || '?'}` : '—', 'audio-in'],
      ['Video out', vout ? `${kbps(vout)} · ${vout.codec || '?'} · ${vout.width}×${vout.height} @ ${Math.round(vout.fps)} fps` : '—', 'video-out'],
      ['Audio out', aout ? kbps(aout) : '—', 'audio-out'],
    ];
    const dl = card.querySelector('dl');
    dl.replaceChildren(...rows.flatMap(([k, v, key]) => [h('dt', { text: k }), h('dd', { text: v, 'data-key': key })]));
    const sum = (x, k) => ((x.video && x.video[k]) || 0) + ((x.audio && x.audio[k]) || 0);
    drawGraph(card.querySelector('canvas.bitrate'), hist.map((x) => sum(x.in, 'kbps')), hist.map((x) => sum(x.out, 'kbps')));
    // How many points the graphs show (for tests: what is drawn).
    for (const c of card.querySelectorAll('canvas.graph')) /** @type {HTMLCanvasElement} */ (c).dataset.points = String(hist.length);
    drawGraph(card.querySelector('canvas.pps'), hist.map((x) => sum(x.in, 'pps')), hist.map((x) => sum(x.out, 'pps')));
  }
}

/**
 * Packet loss received over both kinds since the previous sample, in
 * percent: from the counters' changes, not their totals (the total of
 * packetsLost goes negative with duplicates, and a simulcast layer switch
 * in a group room can make it jump back), and never below 0.
 * @param {PeerStats|undefined} prev @param {PeerStats} cur
 */
function lossPct(prev, cur) {
  if (!prev) return 0;
  let lost = 0, got = 0;
  for (const kind of /** @type {const} */ (['video', 'audio'])) {
    const a = prev.in[kind], b = cur.in[kind];
    if (!a || !b) continue;
    lost += Math.max(0, b.lost - a.lost);
    got += Math.max(0, b.packets - a.packets);
  }
  return lost + got ? Math.min(100, (100 * lost) / (lost + got)) : 0;
}

/** Draws two series over the last HISTORY seconds. @param {HTMLCanvasElement} cv @param {number[]} a @param {number[]} b */
function drawGraph(cv, a, b) {
  const dpr = window.devicePixelRatio || 1;
  const cssW = cv.clientWidth || 300;
  const cssH = cv.clientHeight || 90;
  if (cv.width !== Math.round(cssW * dpr)) {
    cv.width = Math.round(cssW * dpr);
    cv.height = Math.round(cssH * dpr);
  }
  const ctx = cv.getContext('2d');
  const W = cv.width, H = cv.height;
  ctx.clearRect(0, 0, W, H);
  const max = niceMax(Math.max(1, ...a, ...b));
  ctx.font = `${11 * dpr}px system-ui, sans-serif`;
  ctx.fillStyle = 'rgba(255,255,255,.45)';
  ctx.strokeStyle = 'rgba(255,255,255,.08)';
  ctx.lineWidth = 1;
  for (let i = 0; i <= 3; i++) {
    const y = Math.round(4 * dpr + ((H - 8 * dpr) * i) / 3) + 0.5;
    ctx.beginPath();
    ctx.moveTo(0, y);
    ctx.lineTo(W, y);
    ctx.stroke();
  }
  ctx.fillText(String(max), 4 * dpr, 14 * dpr);
  ctx.fillText(`-${HISTORY / 60} min`, 4 * dpr, H - 4 * dpr);
  const line = (vals, color, fill) => {
    if (vals.length < 2) return;
    const step = W / (HISTORY - 1);
    const x0 = W - (vals.length - 1) * step;
    const y = (v) => H - 4 * dpr - ((H - 8 * dpr) * v) / max;
    ctx.beginPath();
    vals.forEach((v, i) => (i ? ctx.lineTo(x0 + i * step, y(v)) : ctx.moveTo(x0, y(v))));
    ctx.strokeStyle = color;
    ctx.lineWidth = 2 * dpr;
    ctx.stroke();
    ctx.lineTo(W, H);
    ctx.lineTo(x0, H);
    ctx.fillStyle = fill;
    ctx.fill();
  };
  line(a, '#4f9dff', 'rgba(79,157,255,.12)');
  line(b, '#37d399', 'rgba(55,211,153,.10)');
}

/** @param {number} v */
function niceMax(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}
