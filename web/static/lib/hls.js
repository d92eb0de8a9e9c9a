// @ts-check
// HLS: the same stream as LL-HLS files (GET /hls/<stream>/index.m3u8),
// for when WebRTC cannot play it (the server's WebRTC viewer cap, a
// network that blocks WebRTC, or ?hls). hls.js is vendored and loaded only
// when a page plays HLS; Safari (HLS without MSE) plays it natively.

import { ParleyError } from './errors.js';

/** Where the vendored hls.js (npm 1.7.4, Apache-2.0, with its LICENSE) is served. */
export const HLS_LIB = '/vendor/hls.js-1.7.4/hls.min.mjs';

/**
 * The stream's LL-HLS playlist URL; with auth on, the subscribe token goes
 * in ?token= (the server carries it into the part and segment URLs).
 * @param {string} stream @param {string} [token]
 */
export function hlsURL(stream, token) {
  const u = `/hls/${encodeURIComponent(stream)}/index.m3u8`;
  return token ? `${u}?token=${encodeURIComponent(token)}` : u;
}

/** Whether video plays HLS by itself and there is no MSE for hls.js (Safari on iPhone). @param {HTMLVideoElement} video */
export function nativeHLS(video) {
  // @ts-ignore ManagedMediaSource is Safari's MSE
  const mse = !!(window.MediaSource || window.ManagedMediaSource);
  return !mse && video.canPlayType('application/vnd.apple.mpegurl') !== '';
}

/**
 * An HLS playback of url in video: hls.js (loaded now), or the browser's own
 * HLS. onError gets a ParleyError (.status is the HTTP status of a playlist or
 * part that failed, 0 otherwise) once playback cannot go on; close() stops.
 * latency() is how far behind the live edge it plays, in seconds (NaN before
 * it knows).
 * @param {HTMLVideoElement} video @param {string} url
 * @param {{onError?: (e: ParleyError) => void}} [opts]
 * @returns {Promise<{kind: 'hls.js'|'native', latency: () => number, close: () => void, hls?: any}>}
 */
export async function playHLS(video, url, { onError = () => {} } = {}) {
  if (nativeHLS(video)) {
    const err = () => onError(new ParleyError('hls_media', (video.error && video.error.message) || 'the browser could not play the HLS stream'));
    video.addEventListener('error', err);
    video.src = url;
    return {
      kind: 'native',
      latency: () => {
        // EXT-X-PROGRAM-DATE-TIME follows the server's wall clock.
        // @ts-ignore getStartDate is Safari's
        const start = video.getStartDate ? video.getStartDate().getTime() : NaN;
        return (Date.now() - start) / 1000 - video.currentTime;
      },
      close: () => {
        video.removeEventListener('error', err);
        video.removeAttribute('src');
        video.load();
      },
    };
  }
  const { default: Hls } = await import(HLS_LIB);
  if (!Hls.isSupported()) throw new ParleyError('hls_unsupported', 'this browser can play neither WebRTC nor HLS');
  // The ESM build has no inline worker: fMP4 needs no transmuxing anyway.
  // Behind the target delay (after a stall, or a start far from the live
  // edge), play up to 1.5x faster to catch up, as LL-HLS players do.
  const hls = new Hls({ lowLatencyMode: true, enableWorker: false, backBufferLength: 10, maxLiveSyncPlaybackRate: 1.5 });
  let recovered = 0;
  hls.on(Hls.Events.ERROR, (/** @type {any} */ _ev, /** @type {any} */ d) => {
    if (!d.fatal) return;
    if (d.type === Hls.ErrorTypes.MEDIA_ERROR && recovered++ < 2) {
      hls.recoverMediaError();
      return;
    }
    const status = (d.response && d.response.code) || 0;
    onError(new ParleyError(status ? 'http-' + status : d.details, status ? `HLS: HTTP ${status} for ${d.details}` : `HLS: ${d.details}`, status));
  });
  hls.loadSource(url);
  hls.attachMedia(video);
  return { kind: 'hls.js', hls, latency: () => hls.latency, close: () => hls.destroy() };
}
