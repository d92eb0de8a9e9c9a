// @ts-check
// Local recording (MediaRecorder → .webm) and snapshots (PNG) of the call:
// every tile's video is drawn into one canvas, every audio track mixed.
import { download } from './ui.js';

/** Draws the visible tiles of a grid into a canvas. @param {HTMLCanvasElement} cv @param {HTMLElement} grid */
function paint(cv, grid) {
  const ctx = cv.getContext('2d');
  const tiles = /** @type {HTMLElement[]} */ ([...grid.querySelectorAll('.tile')]);
  const W = cv.width, H = cv.height;
  ctx.fillStyle = '#0f1115';
  ctx.fillRect(0, 0, W, H);
  const n = Math.max(1, tiles.length);
  const cols = Math.ceil(Math.sqrt(n));
  const rows = Math.ceil(n / cols);
  const gap = 8;
  const tw = (W - gap * (cols + 1)) / cols;
  const th = (H - gap * (rows + 1)) / rows;
  tiles.forEach((tile, i) => {
    const x = gap + (i % cols) * (tw + gap);
    const y = gap + Math.floor(i / cols) * (th + gap);
    ctx.fillStyle = '#1b1f27';
    ctx.fillRect(x, y, tw, th);
    const v = tile.querySelector('video');
    const showVideo = v && v.videoWidth && tile.dataset.videoMuted !== 'true';
    if (showVideo) {
      const s = Math.min(tw / v.videoWidth, th / v.videoHeight);
      const w = v.videoWidth * s, hh = v.videoHeight * s;
      ctx.drawImage(v, x + (tw - w) / 2, y + (th - hh) / 2, w, hh);
    }
    const name = tile.dataset.name || '';
    ctx.font = '600 18px system-ui, sans-serif';
    const tw2 = ctx.measureText(name).width;
    ctx.fillStyle = 'rgba(0,0,0,.55)';
    ctx.fillRect(x + 10, y + th - 38, tw2 + 20, 28);
    ctx.fillStyle = '#fff';
    ctx.fillText(name, x + 20, y + th - 18);
  });
}

/** Saves a PNG of the whole call. @param {HTMLElement} grid @param {string} room */
export async function snapshot(grid, room) {
  const cv = document.createElement('canvas');
  cv.width = 1280;
  cv.height = 720;
  paint(cv, grid);
  const blob = await new Promise((r) => cv.toBlob(r, 'image/png'));
  download(blob, `parley-${room}-${stamp()}.png`);
  return blob;
}

function stamp() {
  return new Date().toISOString().replace(/[:]/g, '-').replace(/\..*/, '');
}

export class CallRecorder {
  /**
   * @param {HTMLElement} grid @param {string} room
   * @param {(seconds: number) => void} [onData] called as each second of recording is handed over
   */
  constructor(grid, room, onData) {
    this.grid = grid;
    this.room = room;
    this.onData = onData || (() => {});
    this.recorder = null;
  }

  get recording() {
    return !!this.recorder;
  }

  /** @param {MediaStream[]} audioStreams */
  start(audioStreams) {
    const cv = document.createElement('canvas');
    cv.width = 1280;
    cv.height = 720;
    this.timer = setInterval(() => paint(cv, this.grid), 1000 / 25);
    const out = cv.captureStream(25);
    this.audio = new AudioContext();
    const dest = this.audio.createMediaStreamDestination();
    this.mixed = new Set();
    this.dest = dest;
    for (const s of audioStreams) this.addAudio(s);
    for (const t of dest.stream.getAudioTracks()) out.addTrack(t);
    const type = ['video/webm;codecs=vp9,opus', 'video/webm;codecs=vp8,opus', 'video/webm'].find((t) => MediaRecorder.isTypeSupported(t));
    const chunks = [];
    this.recorder = new MediaRecorder(out, { mimeType: type, videoBitsPerSecond: 2_500_000 });
    this.recorder.ondataavailable = (e) => {
      if (!e.data.size) return;
      chunks.push(e.data);
      this.onData(chunks.length); // a chunk a second (start(1000))
    };
    this.recorder.onstop = () => {
      download(new Blob(chunks, { type: 'video/webm' }), `parley-${this.room}-${stamp()}.webm`);
      for (const t of out.getTracks()) t.stop();
    };
    this.recorder.start(1000);
  }

  /** Mixes another stream's audio into the recording. @param {MediaStream} s */
  addAudio(s) {
    if (!this.recorder && !this.dest) return;
    for (const t of s.getAudioTracks()) {
      if (this.mixed.has(t.id)) continue;
      this.mixed.add(t.id);
      this.audio.createMediaStreamSource(new MediaStream([t])).connect(this.dest);
    }
  }

  stop() {
    if (!this.recorder) return;
    clearInterval(this.timer);
    this.recorder.stop();
    this.recorder = null;
    this.dest = null;
    this.audio.close();
  }
}
