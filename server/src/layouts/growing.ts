/**
 * Files still being written: a download or a trainer's save in progress. Such a file is not judged
 * until it settles, so a half-written checkpoint is never reported CORRUPT.
 */

/** Names browsers and hub clients give a download until it completes. */
const PARTIAL_SUFFIXES = ['.incomplete', '.part', '.crdownload', '.partial'];
/** aria2 keeps `<name>.aria2` beside the file it is still writing. */
const CONTROL_FILE_SUFFIX = '.aria2';

export function isPartialDownloadName(name: string): boolean {
  const lower = name.toLowerCase();
  return PARTIAL_SUFFIXES.some((s) => lower.endsWith(s));
}

export interface StatSample {
  size: number;
  /** Modification time in ms (or ns as a number; only equality matters). */
  mtimeMs: number;
  ino: number;
  /** When the sample was taken (ms, any monotonic clock). */
  at: number;
}

export type Settling =
  | { state: 'settled' }
  | { state: 'growing'; why: string }
  /** Not changed between the samples, but not for long enough yet. */
  | { state: 'waiting'; remainingMs: number };

/**
 * Whether a file has settled, from two stats taken some ms apart (`settleMs`: how long it must be
 * still), its name, and its folder's other names (a download client's control file beside it).
 */
export function settling(
  name: string,
  before: StatSample,
  after: StatSample,
  settleMs: number,
  siblings: readonly string[] = [],
): Settling {
  if (isPartialDownloadName(name)) return { state: 'growing', why: 'a partial download (its name says so)' };
  if (siblings.includes(name + CONTROL_FILE_SUFFIX)) return { state: 'growing', why: 'a download in progress (aria2)' };
  if (after.ino !== before.ino) return { state: 'growing', why: 'replaced while being watched' };
  if (after.size !== before.size)
    return { state: 'growing', why: `size went from ${before.size} to ${after.size} bytes` };
  if (after.mtimeMs !== before.mtimeMs) return { state: 'growing', why: 'written to while being watched' };
  const still = after.at - before.at;
  return still >= settleMs ? { state: 'settled' } : { state: 'waiting', remainingMs: settleMs - still };
}
