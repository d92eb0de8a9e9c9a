// @ts-check
// parley.js — the Parley browser client library, its one entry module.
//
// Plain ES modules, no dependencies, no build step. The library's modules
// live under lib/, one job each (see docs/client-js.md); this module
// re-exports what pages use. Pages reach the server only through it (the
// home page loads lib/names.js alone, the operations pages lib/api.js).

export { ParleyError } from './lib/errors.js';
export { Client } from './lib/client.js';
export { Signaling } from './lib/signaling.js';
export { formatBytes, sha256Hex, CHUNK_SIZE } from './lib/files.js';
export { randomRoomId } from './lib/names.js';
export { api, authHeaders, serverInfo } from './lib/api.js';
export { publish, play, publishMedia, playMedia, VIEWER_LIMIT } from './lib/whip.js';
export { playHLS, hlsURL } from './lib/hls.js';
export { BroadcastChat, chatRoom } from './lib/chat.js';
export { ControlSocket } from './lib/show.js';
export { watchStreamStatus } from './lib/stream-status.js';
export { runChecks, checkInfo, probeStun, probeTurn, probeMedia, pickServer } from './lib/check.js';

/** @typedef {import('./lib/client.js').ClientState} ClientState */
/** @typedef {import('./lib/errors.js').MemberInfo} MemberInfo */
/** @typedef {import('./lib/p2p.js').Peer} Peer */
/** @typedef {import('./lib/files.js').Transfer} Transfer */
/** @typedef {import('./lib/stats.js').PeerStats} PeerStats */
/** @typedef {import('./lib/whip.js').Session} Session */
/** @typedef {import('./lib/stream-status.js').StreamStatus} StreamStatus */
/** @typedef {import('./lib/check.js').ProbeResult} ProbeResult */
