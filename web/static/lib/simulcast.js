// @ts-check
// What a browser sends of its video: simulcast layers and the bitrate cap.

/** Simulcast layers a browser sends (rids the server knows: q/h/f), in sfu rooms and over WHIP. */
export const SIMULCAST = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500000 },
  { rid: 'f', maxBitrate: 2500000 },
];

/**
 * Caps what tx sends at want bits per second (0: no cap) once pc is stable.
 * With simulcast the cap bounds what all layers send together; layers that
 * would get too little are switched off, the lowest kept.
 * @param {RTCPeerConnection} pc @param {RTCRtpTransceiver|null} tx @param {number} want
 */
export async function capBitrate(pc, tx, want) {
  if (!tx || pc.signalingState !== 'stable') return;
  const p = tx.sender.getParameters();
  if (!p.encodings || !p.encodings.length) return;
  if (p.encodings.length > 1) {
    let left = want || Infinity;
    let changed = false;
    p.encodings.forEach((e, i) => {
      const def = (SIMULCAST.find((x) => x.rid === e.rid) || SIMULCAST[i] || SIMULCAST[0]).maxBitrate;
      const rate = Math.min(def, left);
      const active = i === 0 || rate >= def / 4;
      const max = Math.round(Math.max(rate, 30000));
      if (e.maxBitrate !== max || e.active !== active) changed = true;
      e.maxBitrate = max;
      e.active = active;
      if (active) left = Math.max(0, left - rate);
    });
    if (changed) await tx.sender.setParameters(p);
    return;
  }
  if ((p.encodings[0].maxBitrate || 0) === want) return;
  if (want) p.encodings[0].maxBitrate = want;
  else delete p.encodings[0].maxBitrate;
  await tx.sender.setParameters(p);
}
