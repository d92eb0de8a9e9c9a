// @ts-check
// Local media: devices, constraints, effects and screen sharing.
//
// The track we send ("output") is the raw camera track when there is no effect
// and no screen share; otherwise it is a canvas captureStream track drawn by a
// compositor. Whenever the output changes, "output" fires so the call page can
// replaceTrack it on every peer connection (no renegotiation).

export const RESOLUTIONS = { '360': [640, 360], '480': [640, 480], '720': [1280, 720], '1080': [1920, 1080] };
export const EFFECTS = { none: 'None', grayscale: 'Grayscale', blur: 'Blur', sepia: 'Sepia', invert: 'Invert' };
const FILTERS = { none: 'none', grayscale: 'grayscale(1)', blur: 'blur(10px)', sepia: 'sepia(0.9)', invert: 'invert(1)' };

/** Human text for a getUserMedia/getDisplayMedia failure. @param {any} e */
export function describeMediaError(e) {
  const n = e && e.name;
  if (n === 'NotAllowedError' || n === 'SecurityError') return { code: 'denied', text: 'Access to your camera and microphone was blocked. Allow it in the browser’s address bar, or join without them.' };
  if (n === 'NotFoundError' || n === 'OverconstrainedError') return { code: 'absent', text: 'No camera or microphone was found.' };
  if (n === 'NotReadableError' || n === 'AbortError') return { code: 'busy', text: 'Your camera or microphone is in use by another application.' };
  if (!navigator.mediaDevices) return { code: 'insecure', text: 'This page is not in a secure context (https or localhost), so the browser offers no camera or microphone.' };
  return { code: 'error', text: `Camera/microphone error: ${(e && e.message) || e}` };
}

/**
 * A timer that keeps ticking in background tabs (worker timers are not
 * throttled like page timers). At most one tick is outstanding: the worker
 * skips ticks until the page has handled the last one, so a page slower
 * than the rate (a busy CPU) is not buried under a backlog of ticks.
 */
function workerTicker(ms, fn) {
  try {
    const src = 'let t,busy=0;onmessage=e=>{if(e.data==="done"){busy=0;return}clearInterval(t);if(e.data>0)t=setInterval(()=>{if(!busy){busy=1;postMessage(0)}},e.data)}';
    const w = new Worker(URL.createObjectURL(new Blob([src], { type: 'text/javascript' })));
    w.onmessage = () => {
      try {
        fn();
      } finally {
        w.postMessage('done');
      }
    };
    w.postMessage(ms);
    return { set: (m) => w.postMessage(m), stop: () => w.terminate() };
  } catch {
    let t = setInterval(fn, ms);
    return { set: (m) => { clearInterval(t); t = setInterval(fn, m); }, stop: () => clearInterval(t) };
  }
}

/** @param {MediaStream} stream */
function hiddenVideo(stream) {
  const v = document.createElement('video');
  v.muted = true;
  v.playsInline = true;
  v.srcObject = stream;
  v.play().catch(() => {});
  return v;
}

export class LocalMedia extends EventTarget {
  constructor(settings) {
    super();
    this.settings = { cam: '', mic: '', speaker: '', res: '720', fps: 30, effect: 'none', ...settings };
    /** @type {MediaStreamTrack|null} */
    this.camera = null;
    /** @type {MediaStreamTrack|null} */
    this.mic = null;
    /** @type {MediaStream|null} */
    this.screenStream = null;
    this.pip = false;
    this.videoEnabled = true;
    this.audioEnabled = true;
    /** @type {MediaStreamTrack|null} */
    this.output = null;
    this.canvas = null;
    this.ticker = null;
  }

  videoConstraints() {
    const [w, h] = RESOLUTIONS[this.settings.res] || RESOLUTIONS['720'];
    /** @type {MediaTrackConstraints} */
    const c = { width: { ideal: w }, height: { ideal: h }, frameRate: { ideal: Number(this.settings.fps) || 30 } };
    if (this.settings.cam) c.deviceId = { exact: this.settings.cam };
    return c;
  }

  audioConstraints() {
    /** @type {MediaTrackConstraints} */
    const c = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
    if (this.settings.mic) c.deviceId = { exact: this.settings.mic };
    return c;
  }

  /**
   * Opens microphone and/or camera. Throws the getUserMedia error.
   * @param {{audio: boolean, video: boolean}} want
   */
  async start(want) {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) throw Object.assign(new Error('no mediaDevices'), { name: 'InsecureContext' });
    let s;
    try {
      s = await navigator.mediaDevices.getUserMedia({ audio: want.audio && this.audioConstraints(), video: want.video && this.videoConstraints() });
    } catch (e) {
      // A remembered device may be gone: retry with defaults once.
      if (e.name !== 'OverconstrainedError' && e.name !== 'NotFoundError') throw e;
      if (!this.settings.cam && !this.settings.mic) throw e;
      this.settings.cam = this.settings.mic = '';
      s = await navigator.mediaDevices.getUserMedia({ audio: want.audio && this.audioConstraints(), video: want.video && this.videoConstraints() });
    }
    this.stopTracks();
    this.mic = s.getAudioTracks()[0] || null;
    this.camera = s.getVideoTracks()[0] || null;
    if (this.mic) this.mic.enabled = this.audioEnabled;
    this.dispatchEvent(new CustomEvent('mic', { detail: this.mic }));
    this.rebuildOutput();
  }

  stopTracks() {
    for (const t of [this.mic, this.camera]) if (t) t.stop();
    this.mic = this.camera = null;
  }

  /** @returns {Promise<{cams: MediaDeviceInfo[], mics: MediaDeviceInfo[], speakers: MediaDeviceInfo[]}>} */
  async devices() {
    const list = navigator.mediaDevices ? await navigator.mediaDevices.enumerateDevices() : [];
    return {
      cams: list.filter((d) => d.kind === 'videoinput'),
      mics: list.filter((d) => d.kind === 'audioinput'),
      speakers: list.filter((d) => d.kind === 'audiooutput'),
    };
  }

  /** The stream the local preview shows (output video + mic). */
  get previewStream() {
    const s = new MediaStream();
    if (this.output) s.addTrack(this.output);
    return s;
  }

  /** Tracks to send. */
  get sendStream() {
    const s = new MediaStream();
    if (this.mic) s.addTrack(this.mic);
    if (this.output) s.addTrack(this.output);
    return s;
  }

  /** Switches the camera (or its resolution/frame rate) without renegotiation. */
  async switchCamera() {
    const old = this.camera;
    let s;
    try {
      s = await navigator.mediaDevices.getUserMedia({ video: this.videoConstraints() });
    } catch (e) {
      if (!old || e.name !== 'NotReadableError') throw e;
      old.stop(); // some cameras can only be opened once
      s = await navigator.mediaDevices.getUserMedia({ video: this.videoConstraints() });
    }
    this.camera = s.getVideoTracks()[0];
    this.camera.enabled = true;
    this.rebuildOutput();
    if (old) setTimeout(() => old.stop(), 500);
  }

  /** Switches the microphone without renegotiation. */
  async switchMic() {
    const old = this.mic;
    const s = await navigator.mediaDevices.getUserMedia({ audio: this.audioConstraints() });
    this.mic = s.getAudioTracks()[0];
    this.mic.enabled = this.audioEnabled;
    this.dispatchEvent(new CustomEvent('mic', { detail: this.mic }));
    if (old) old.stop();
  }

  /** Adds a microphone when the call started without one. */
  async addMic() {
    await this.switchMic();
  }

  /** @param {string} effect */
  setEffect(effect) {
    this.settings.effect = FILTERS[effect] ? effect : 'none';
    this.rebuildOutput();
  }

  /** @param {boolean} on */
  setVideoEnabled(on) {
    this.videoEnabled = on;
    if (this.output) this.output.enabled = on;
    if (this.camera) this.camera.enabled = on;
  }

  /** @param {boolean} on */
  setAudioEnabled(on) {
    this.audioEnabled = on;
    if (this.mic) this.mic.enabled = on;
  }

  /** Starts screen sharing; pip adds the camera as a picture-in-picture. @param {boolean} pip */
  async startScreen(pip) {
    const s = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15 } }, audio: false });
    this.stopScreen(false);
    this.screenStream = s;
    this.pip = pip;
    s.getVideoTracks()[0].addEventListener('ended', () => this.stopScreen());
    this.rebuildOutput();
  }

  stopScreen(rebuild = true) {
    if (!this.screenStream) return;
    for (const t of this.screenStream.getTracks()) t.stop();
    this.screenStream = null;
    this.pip = false;
    if (rebuild) this.rebuildOutput();
    this.dispatchEvent(new CustomEvent('screen-ended'));
  }

  get sharing() {
    return !!this.screenStream;
  }

  /** Decides what the output track is and tells listeners if it changed. */
  rebuildOutput() {
    const effect = this.settings.effect;
    const screen = this.screenStream && this.screenStream.getVideoTracks()[0];
    let out;
    if (!screen && (effect === 'none' || !this.camera)) {
      this.stopCompositor();
      out = this.camera;
    } else {
      out = this.startCompositor();
    }
    if (out) out.enabled = this.videoEnabled;
    if (out !== this.output) {
      this.output = out;
      this.dispatchEvent(new CustomEvent('output', { detail: out }));
    }
  }

  startCompositor() {
    const fps = Number(this.settings.fps) || 30;
    if (!this.canvas) {
      this.canvas = document.createElement('canvas');
      this.canvas.width = 1280;
      this.canvas.height = 720;
      this.ctx = this.canvas.getContext('2d');
      this.canvasTrack = this.canvas.captureStream(fps).getVideoTracks()[0];
      this.ticker = workerTicker(1000 / fps, () => this.draw());
    } else {
      this.ticker.set(1000 / fps);
    }
    for (const v of [this.camVideo, this.screenVideo]) if (v) v.srcObject = null;
    this.camVideo = this.camera ? hiddenVideo(new MediaStream([this.camera])) : null;
    const screen = this.screenStream && this.screenStream.getVideoTracks()[0];
    this.screenVideo = screen ? hiddenVideo(new MediaStream([screen])) : null;
    return this.canvasTrack;
  }

  stopCompositor() {
    if (!this.canvas) return;
    this.ticker.stop();
    this.canvasTrack.stop();
    for (const v of [this.camVideo, this.screenVideo]) if (v) v.srcObject = null;
    this.canvas = this.ctx = this.canvasTrack = this.ticker = null;
    this.camVideo = this.screenVideo = null;
  }

  draw() {
    const ctx = this.ctx;
    if (!ctx) return;
    const cv = this.canvas;
    const main = this.screenVideo || this.camVideo;
    if (!main || main.videoWidth === 0) return;
    // Follow the main source's size (bounded to 1080p).
    const scale = Math.min(1, 1920 / main.videoWidth, 1080 / main.videoHeight);
    const w = Math.round(main.videoWidth * scale) & ~1;
    const hh = Math.round(main.videoHeight * scale) & ~1;
    if (cv.width !== w || cv.height !== hh) {
      cv.width = w;
      cv.height = hh;
    }
    const filter = FILTERS[this.settings.effect] || 'none';
    if (this.screenVideo) {
      ctx.filter = 'none';
      ctx.drawImage(this.screenVideo, 0, 0, w, hh);
      if (this.pip && this.camVideo && this.camVideo.videoWidth) {
        const pw = Math.round(w * 0.24);
        const ph = Math.round((pw * this.camVideo.videoHeight) / this.camVideo.videoWidth);
        const x = w - pw - Math.round(w * 0.02);
        const y = hh - ph - Math.round(w * 0.02);
        ctx.save();
        ctx.beginPath();
        ctx.roundRect(x, y, pw, ph, Math.round(pw * 0.06));
        ctx.clip();
        ctx.filter = filter;
        ctx.drawImage(this.camVideo, x, y, pw, ph);
        ctx.restore();
        ctx.strokeStyle = 'rgba(255,255,255,.8)';
        ctx.lineWidth = Math.max(2, w / 400);
        ctx.beginPath();
        ctx.roundRect(x, y, pw, ph, Math.round(pw * 0.06));
        ctx.stroke();
      }
    } else {
      ctx.filter = filter;
      ctx.drawImage(this.camVideo, 0, 0, w, hh);
      ctx.filter = 'none';
    }
  }

  stop() {
    this.stopScreen(false);
    this.stopCompositor();
    this.stopTracks();
    this.output = null;
  }
}
