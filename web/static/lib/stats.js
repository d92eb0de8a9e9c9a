// @ts-check
// Reading RTCPeerConnection.getStats() into numbers: rates per stream since
// the previous sample, round-trip time and the selected candidate pair.

/**
 * @typedef {{kbps:number,pps:number,bytes:number,packets:number,lost:number,lossPct:number,jitter:number,
 *   codec:string,width:number,height:number,fps:number,framesDecoded:number,framesEncoded:number,
 *   audioLevel:number,totalSamplesReceived:number}} StreamStats
 * @typedef {{ts:number, in:{audio?:StreamStats, video?:StreamStats}, out:{audio?:StreamStats, video?:StreamStats},
 *   rtt:number|null, candidate:{local:string,remote:string,protocol:string,address:string}|null, relay:boolean}} PeerStats
 * @typedef {{ts: number, raw: Map<string, number>}} StatsSample the counters a summary was made from
 */

  /**
 * Turns a stats report into rates since prev (the sample of the previous
 * call, null at first); mine(stat) says whether an inbound stream counts.
 * relay is copied into the result. Returns the numbers and the sample to
 * pass next time.
 * @param {RTCStatsReport} report @param {StatsSample|null} prev
 * @param {(s: any) => boolean} mine @param {boolean} relay
 * @returns {{stats: PeerStats, sample: StatsSample}}
 */
export function summarize(report, prev, mine, relay) {
  const now = performance.now();
  /** @type {PeerStats} */
  const out = { ts: now, in: {}, out: {}, rtt: null, candidate: null, relay };
  const byId = new Map();
  report.forEach((s) => byId.set(s.id, s));
  /** @param {string} key @param {string} id @param {number} v */
  const rate = (key, id, v) => {
    const p = prev && prev.raw.get(key + id);
    if (!p) return 0;
    const dt = (now - prev.ts) / 1000;
    return dt > 0 ? Math.max(0, (v - p) / dt) : 0;
  };
  const raw = new Map();
  /** @type {any} */
  let pair = null;
  report.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId);
  });
  report.forEach((s) => {
    if (!pair && s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s;
    if (s.type !== 'inbound-rtp' && s.type !== 'outbound-rtp') return;
    if (s.type === 'inbound-rtp' && !mine(s)) return;
    const dir = s.type === 'inbound-rtp' ? 'in' : 'out';
    const bytes = dir === 'in' ? s.bytesReceived : s.bytesSent;
    const packets = dir === 'in' ? s.packetsReceived : s.packetsSent;
    raw.set('b' + s.id, bytes || 0);
    raw.set('p' + s.id, packets || 0);
    const codec = s.codecId && byId.get(s.codecId);
    const remoteIn = dir === 'out' && s.remoteId ? byId.get(s.remoteId) : null;
    const lost = dir === 'in' ? s.packetsLost || 0 : remoteIn ? remoteIn.packetsLost || 0 : 0;
    const total = (packets || 0) + lost;
    const entry = {
      kbps: (rate('b', s.id, bytes || 0) * 8) / 1000,
      pps: rate('p', s.id, packets || 0),
      bytes: bytes || 0,
      packets: packets || 0,
      lost,
      lossPct: total ? (100 * lost) / total : 0,
      jitter: dir === 'in' ? s.jitter || 0 : remoteIn ? remoteIn.jitter || 0 : 0,
      codec: codec ? codec.mimeType.split('/')[1] : '',
      width: s.frameWidth || 0,
      height: s.frameHeight || 0,
      fps: s.framesPerSecond || 0,
      framesDecoded: s.framesDecoded || 0,
      framesEncoded: s.framesEncoded || 0,
      audioLevel: s.audioLevel || 0,
      totalSamplesReceived: s.totalSamplesReceived || 0,
    };
    /** @type {Record<string, StreamStats>} */
    const slot = out[dir];
    const had = slot[s.kind];
    if (!had) slot[s.kind] = entry;
    else if (dir === 'out') slot[s.kind] = addLayer(had, entry);
    // Several inbound streams of a kind: the one receiving most now.
    else if (entry.kbps > had.kbps || (entry.kbps === had.kbps && entry.bytes > had.bytes)) slot[s.kind] = entry;
  });
  if (pair) {
    const l = byId.get(pair.localCandidateId);
    const r = byId.get(pair.remoteCandidateId);
    out.rtt = pair.currentRoundTripTime != null ? pair.currentRoundTripTime * 1000 : null;
    out.candidate = {
      local: l ? l.candidateType : '',
      remote: r ? r.candidateType : '',
      protocol: l ? l.relayProtocol || l.protocol : '',
      address: r ? `${r.address || r.ip}:${r.port}` : '',
    };
  }
  return { stats: out, sample: { ts: now, raw } };
}

/**
 * Several outbound streams of a kind are simulcast layers: what goes out is
 * their sum, and its picture is the largest layer sending now (a layer the
 * bitrate cap turned off sends nothing, whatever it sent before).
 * @param {StreamStats} a @param {StreamStats} b @returns {StreamStats}
 */
function addLayer(a, b) {
  /** @param {StreamStats} x */
  const pic = (x) => (x.kbps > 0 ? x.width * x.height + 1 : 0);
  const top = pic(b) > pic(a) ? b : a;
  const lost = a.lost + b.lost, packets = a.packets + b.packets;
  return { ...top, kbps: a.kbps + b.kbps, pps: a.pps + b.pps, bytes: a.bytes + b.bytes, packets, lost,
    lossPct: lost + packets ? (100 * lost) / (lost + packets) : 0 };
}

/**
 * Whether pc's selected candidate pair goes through a TURN relay of ours.
 * @param {RTCPeerConnection} pc @returns {Promise<boolean>}
 */
export async function relayed(pc) {
  try {
    const st = await pc.getStats();
    /** @type {any} */
    let pair = null;
    st.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = st.get(s.selectedCandidatePairId);
    });
    const local = pair && st.get(pair.localCandidateId);
    return !!local && local.candidateType === 'relay';
  } catch {
    return false;
  }
}
