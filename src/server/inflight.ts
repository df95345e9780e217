/**
 * The event ids and Idempotency-Keys of the requests in flight (checked, not yet answered), so that a
 * request carrying one that another request is still appending waits for it, and then finds it recorded
 * (a duplicate) or, when that append failed, appends it itself. Without this, a retry racing its first
 * attempt would be appended twice: neither request finds the id recorded while both are in flight.
 *
 * Ids are counted in a blocked counting filter (one 64-byte line of counters per id) instead of held in a
 * Map: a Map costs a set, a lookup and a delete per id of every request (a tenth of the server thread
 * with 100-event batches); the filter, a hash and a few counters in a line that stays in cache. Its
 * answer "maybe held" is rare for ids not in flight (about 1 in 200,000 with 5,000 ids in flight); then the
 * request waits for every request that arrived before it, which orders by arrival all the requests that
 * may share an id: never two appends of one id, at the cost of a short wait for the few that may.
 */

/** A 64-byte line of 64 counters per block; an id takes 4 of its block's counters. */
const BLOCK_BITS = 15;
const BLOCK_COUNTERS = 64;
const PER_ID = 4;
/** A counter this high stays so (it counts no more, and is never decremented): still correct, if slower. */
const STUCK = 255;

/** A request's hold, released when it is answered. */
interface Hold {
  released: boolean;
  /** Created only when another request waits for this one. */
  wait: Promise<void> | undefined;
  wake: (() => void) | undefined;
}

/** The 4 counter indexes of `stream`, `kind` and `value`, into `out` at `at` (FNV-1a, then mixed). */
function slots(stream: string, kind: number, value: string, out: Int32Array, at: number): void {
  let h = 0x811c9dc5;
  for (let i = 0; i < stream.length; i++) h = Math.imul(h ^ stream.charCodeAt(i), 0x01000193);
  h = Math.imul(h ^ kind, 0x01000193);
  for (let i = 0; i < value.length; i++) h = Math.imul(h ^ value.charCodeAt(i), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  const base = (h >>> (32 - BLOCK_BITS)) * BLOCK_COUNTERS;
  // The counters in the block, from a second mix of the hash.
  let g = Math.imul(h ^ 0x9e3779b9, 0x85ebca6b);
  g ^= g >>> 15;
  g = Math.imul(g, 0xc2b2ae35);
  g ^= g >>> 16;
  out[at] = base + (g & 63);
  out[at + 1] = base + ((g >>> 6) & 63);
  out[at + 2] = base + ((g >>> 12) & 63);
  out[at + 3] = base + ((g >>> 18) & 63);
}

export class InflightIds {
  readonly #counts = new Uint8Array((1 << BLOCK_BITS) * BLOCK_COUNTERS);
  /** Holds not released yet, in arrival order. */
  readonly #holds = new Set<Hold>();

  /**
   * Holds `ids` (and `idempotencyKey`) of `stream` until the returned release is called, which must be
   * (in a finally). `wait` is undefined when no request in flight may hold any of them (the common case);
   * otherwise it resolves once every request that arrived before this one was answered.
   */
  claim(
    stream: string,
    ids: readonly string[],
    idempotencyKey: string | undefined,
  ): { release: () => void; wait: Promise<void> | undefined } {
    const count = ids.length + (idempotencyKey === undefined ? 0 : 1);
    const indexes = new Int32Array(PER_ID * count);
    for (let i = 0; i < ids.length; i++) slots(stream, 0, ids[i]!, indexes, PER_ID * i);
    if (idempotencyKey !== undefined) slots(stream, 1, idempotencyKey, indexes, PER_ID * ids.length);
    const counts = this.#counts;
    let held = false;
    if (this.#holds.size > 0)
      for (let at = 0; at < indexes.length && !held; at += PER_ID)
        held =
          counts[indexes[at]!]! > 0 &&
          counts[indexes[at + 1]!]! > 0 &&
          counts[indexes[at + 2]!]! > 0 &&
          counts[indexes[at + 3]!]! > 0;
    // Before counting this request's ids: the requests it has to wait for are those already in flight.
    const wait = held ? this.#waitForAll() : undefined;
    for (let i = 0; i < indexes.length; i++) if (counts[indexes[i]!]! < STUCK) counts[indexes[i]!]!++;
    const hold: Hold = { released: false, wait: undefined, wake: undefined };
    this.#holds.add(hold);
    const release = () => {
      if (hold.released) return;
      hold.released = true;
      for (let i = 0; i < indexes.length; i++) if (counts[indexes[i]!]! < STUCK) counts[indexes[i]!]!--;
      this.#holds.delete(hold);
      hold.wake?.();
    };
    return { release, wait };
  }

  #waitForAll(): Promise<void> {
    const waits: Array<Promise<void>> = [];
    for (const hold of this.#holds) {
      hold.wait ??= new Promise<void>((resolve) => (hold.wake = resolve));
      waits.push(hold.wait);
    }
    return Promise.all(waits).then(() => undefined);
  }
}
