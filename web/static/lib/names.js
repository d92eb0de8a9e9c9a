// @ts-check
// Room names. No imports: the home page loads this alone.

/** Picks a random readable room id such as "quiet-otter-42". */
export function randomRoomId() {
  const a = ['amber', 'brave', 'calm', 'clever', 'cosmic', 'eager', 'fancy', 'gentle', 'happy', 'jolly', 'kind', 'lively', 'lucky', 'merry', 'misty', 'noble', 'proud', 'quick', 'quiet', 'rapid', 'shiny', 'silver', 'sunny', 'swift', 'tidy', 'vivid', 'warm', 'witty'];
  const n = ['badger', 'comet', 'falcon', 'fern', 'fox', 'harbor', 'heron', 'lake', 'lynx', 'maple', 'meadow', 'moon', 'otter', 'panda', 'pine', 'river', 'robin', 'sparrow', 'star', 'tiger', 'tulip', 'walrus', 'willow', 'wolf'];
  const r = crypto.getRandomValues(new Uint32Array(3));
  return `${a[r[0] % a.length]}-${n[r[1] % n.length]}-${10 + (r[2] % 90)}`;
}
