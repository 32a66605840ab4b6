/**
 * The sync history log: one JSON object per line in `<workspace>/.lora-sync/history.jsonl`.
 *
 * Crash model: each `append` is a single write of whole lines to a file opened for appending, then
 * `datasync`. A crash can therefore leave at most one torn line, at the very end. A line counts as
 * written only once its '\n' is on disk: a last line without '\n' is torn even if it happens to parse,
 * because we cannot know the write finished (it may be a prefix of a longer line that still parses,
 * e.g. a cut-off number). `repair` drops it; `read` skips it; the next `append` repairs first.
 *
 * Reading never throws on bad content (torn, garbage, non-UTF-8 or foreign lines are skipped and
 * counted); only real I/O errors propagate.
 */
import { createReadStream } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { APPEND_NO_FOLLOW, READ_WRITE_NO_FOLLOW, ensureRealDir, notAFolder } from '../io/realDir';
import { createInterface } from 'node:readline';
import { dirname, join, resolve } from 'node:path';
import { withLockFile } from './loraLock';
import { fsyncDir } from '../io/atomicWrite';
import { faultPoint } from '../io/faults';

export const HISTORY_EVENT_KINDS = ['SYNC', 'VERIFY', 'FORCE_OVERWRITE', 'RESTORE'] as const;
export type HistoryEventKind = (typeof HISTORY_EVENT_KINDS)[number];

export interface HistoryEvent {
  /** ISO 8601 UTC. */
  time: string;
  event: HistoryEventKind;
  lora_id: string;
  name: string;
  /** The trainer's match index when given. */
  match_idx?: number;
  /** e.g. LEARNING_UPDATE, FULL_SYNC, MANUAL, ROLE_CHANGE. */
  reason?: string;
  synced_copies?: number;
  failed_copies?: number;
  skipped_copies?: number;
  total_copies?: number;
  /** VERIFY only. */
  consistent?: boolean;
  /** Relative paths concerned (forced overwrite: the file; failures: the failed ones). */
  files?: string[];
  /** FORCE_OVERWRITE: where the old file was kept. */
  backup?: string;
  details?: Record<string, unknown>;
}

export interface HistoryReadOptions {
  /** Keep only the newest N events (after the `loraId` filter). */
  limit?: number;
  loraId?: string;
}

export interface HistoryReadResult {
  events: HistoryEvent[];
  /** Lines that were not valid events, the torn last line included. Blank lines are not counted. */
  skippedLines: number;
}

export const HISTORY_DIR = '.lora-sync';
export const HISTORY_FILE = 'history.jsonl';

const NL = 0x0a;
/** How much of the tail is read at a time when looking for the last '\n'. */
const TAIL_CHUNK = 64 * 1024;
const KINDS: ReadonlySet<string> = new Set(HISTORY_EVENT_KINDS);

/**
 * One promise chain per log file for the whole process, so two `History` objects on the same
 * workspace still never interleave their appends or truncate under each other.
 */
const queues = new Map<string, Promise<unknown>>();

function serialised<T>(file: string, job: () => Promise<T>): Promise<T> {
  const prev = queues.get(file) ?? Promise.resolve();
  const run = prev.then(job, job);
  const tail = run.then(
    () => undefined,
    () => undefined,
  );
  queues.set(file, tail);
  // Forget the chain once it is idle so the map does not grow with every workspace ever opened.
  void tail.then(() => {
    if (queues.get(file) === tail) queues.delete(file);
  });
  return run;
}

/** The parsed event if `line` is a valid history line, else undefined. Never throws. */
export function parseHistoryLine(line: string): HistoryEvent | undefined {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  if (typeof o.time !== 'string' || typeof o.lora_id !== 'string') return undefined;
  if (typeof o.event !== 'string' || !KINDS.has(o.event)) return undefined;
  return o as unknown as HistoryEvent;
}

/** Turns events into log lines, refusing (before anything is written) events that `read` would skip. */
function serialise(events: readonly HistoryEvent[]): Buffer {
  const lines = events.map((e, i) => {
    // BigInt cannot go through JSON; a decimal string keeps the value readable.
    const json = JSON.stringify(e, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
    if (json === undefined || parseHistoryLine(json) === undefined) {
      throw new TypeError(`history event ${i} needs string time and lora_id and a known event kind`);
    }
    return `${json}\n`; // JSON.stringify escapes '\n' inside strings, so one event is one line
  });
  return Buffer.from(lines.join(''), 'utf8');
}

function isNotFound(e: unknown): boolean {
  return (e as NodeJS.ErrnoException | null)?.code === 'ENOENT';
}

/**
 * Opens a file of the state folder to read it: undefined when there is none yet. A state "folder"
 * that is a file (ENOTDIR) is the typed error a write there gets too (realDir.ts), not a crash.
 */
async function openToRead(file: string): Promise<FileHandle | undefined> {
  try {
    return await open(file, 'r');
  } catch (e) {
    if (isNotFound(e)) return undefined;
    if ((e as NodeJS.ErrnoException).code === 'ENOTDIR') throw notAFolder(dirname(file));
    throw e;
  }
}

/** Offset just past the last '\n' in the first `size` bytes (0 if none), reading only the tail. */
async function endOfLastLine(fh: FileHandle, size: number): Promise<number> {
  const buf = Buffer.allocUnsafe(Math.min(TAIL_CHUNK, size));
  let end = size;
  while (end > 0) {
    const start = Math.max(0, end - buf.length);
    const want = end - start;
    const { bytesRead } = await fh.read(buf, 0, want, start);
    // A short read means the file shrank under us; treat the unread part as absent.
    const nl = buf.subarray(0, bytesRead).lastIndexOf(NL);
    if (nl >= 0) return start + nl + 1;
    end = start;
  }
  return 0;
}

/** Where complete lines end, and the file's size, in one look at the file. */
async function lineBoundary(file: string): Promise<{ size: number; complete: number } | undefined> {
  const fh = await openToRead(file);
  if (!fh) return undefined;
  try {
    const { size } = await fh.stat();
    return { size, complete: await endOfLastLine(fh, size) };
  } finally {
    await fh.close();
  }
}

/** Whether the byte before `offset` is a '\n' (offset 0: the start, a line boundary too). */
async function endsLineAt(fh: FileHandle, offset: number): Promise<boolean> {
  if (offset === 0) return true;
  const b = Buffer.alloc(1);
  const { bytesRead } = await fh.read(b, 0, 1, offset - 1);
  return bytesRead === 1 && b[0] === NL;
}

interface ReadLines {
  events: HistoryEvent[];
  skippedLines: number;
}

/** One line's events as `readline` would see it: a lone '\r' ends a line too (valid lines hold none). */
function linesOf(text: string): string[] {
  return (text.endsWith('\r') ? text.slice(0, -1) : text).split('\r');
}

/** Each non-blank line of `input` (a stream of log bytes), parsed: the event, or undefined if unreadable. */
async function eachLine(input: NodeJS.ReadableStream, fn: (ev: HistoryEvent | undefined) => void): Promise<void> {
  for await (const line of createInterface({ input, crlfDelay: Infinity })) {
    if (line.trim() !== '') fn(parseHistoryLine(line));
  }
}

/** Whether an event counts in `total_syncs_performed`: a SYNC that wrote at least one copy. */
export function isCountedSync(ev: HistoryEvent | undefined): boolean {
  return ev?.event === 'SYNC' && (ev.synced_copies ?? 0) > 0;
}

/** Bytes read at a time when counting syncs (a line longer than this is read whole all the same). */
const COUNT_CHUNK = 1024 * 1024;
/** What every line that can hold a SYNC event contains: the name itself, or a JSON `\u` escape. */
const SYNC_TEXT = Buffer.from('SYNC');
const ESCAPE_TEXT = Buffer.from('\\u');

/**
 * How many SYNC events that synced a copy the lines of [start, end) hold (`end` is a line's end).
 * Every `status` and `verify` asks, and a busy log holds mostly VERIFY lines (one per LoRA per run):
 * only the lines that contain `SYNC` or a `\u` escape (without which no JSON string spells SYNC) are
 * decoded and parsed, each split as `readline` splits it (a lone '\r' ends a line too). So the count
 * costs a byte search over the log, not a JSON parse of every line.
 */
async function countSyncs(fh: FileHandle, start: number, end: number): Promise<number> {
  let count = 0;
  let buf = Buffer.allocUnsafe(Math.min(COUNT_CHUNK, end - start));
  let pos = start;
  while (pos < end) {
    let got = 0;
    let cut = -1;
    // Read until the buffer holds at least one whole line, growing it for a line longer than it.
    for (;;) {
      const want = Math.min(buf.length - got, end - pos - got);
      const { bytesRead } = await fh.read(buf, got, want, pos + got);
      // The file shrank under us (cut in place): what is gone is not counted; a log then shorter than
      // where this count stopped is counted again from its start by the next call.
      if (bytesRead === 0) return count;
      got += bytesRead;
      cut = buf.lastIndexOf(NL, got - 1);
      if (cut >= 0 || pos + got >= end) break;
      const bigger = Buffer.allocUnsafe(buf.length * 2);
      buf.copy(bigger, 0, 0, got);
      buf = bigger;
    }
    const lines = cut >= 0 ? cut + 1 : got; // whole lines only; the rest is read again with the next
    // Searched within these whole lines only, and each string's next place kept until passed: a
    // search per hit to the buffer's end would make a log of SYNC lines cost the square of its hits.
    const view = buf.subarray(0, lines);
    const next = (what: Buffer, from: number) => {
      const at = view.indexOf(what, from);
      return at < 0 ? lines : at;
    };
    let sync = next(SYNC_TEXT, 0);
    let escaped = next(ESCAPE_TEXT, 0);
    for (let i = 0; i < lines; ) {
      if (sync < i) sync = next(SYNC_TEXT, i);
      if (escaped < i) escaped = next(ESCAPE_TEXT, i);
      const hit = Math.min(sync, escaped);
      if (hit >= lines) break;
      const from = view.lastIndexOf(NL, hit) + 1;
      const to = view.indexOf(NL, hit);
      const lineEnd = to < 0 ? lines : to;
      for (const part of linesOf(view.toString('utf8', from, lineEnd))) {
        if (part.trim() === '') continue;
        if (isCountedSync(parseHistoryLine(part))) count++;
      }
      i = lineEnd + 1;
    }
    pos += lines;
  }
  return count;
}

/** Every valid event in the first `complete` bytes, oldest first (optionally one LoRA's). */
async function readAll(file: string, complete: number, loraId: string | undefined): Promise<ReadLines> {
  const events: HistoryEvent[] = [];
  let skippedLines = 0;
  await eachLine(createReadStream(file, { start: 0, end: complete - 1 }), (ev) => {
    if (!ev) skippedLines++;
    else if (loraId === undefined || ev.lora_id === loraId) events.push(ev);
  });
  return { events, skippedLines };
}

/**
 * The newest `limit` valid events in the first `complete` bytes (which end with '\n'), oldest first,
 * read backwards a chunk at a time. Lines are split on the '\n' byte, which never occurs inside a
 * UTF-8 sequence, so a character cut by a chunk's edge is decoded whole.
 */
async function readNewest(
  file: string,
  complete: number,
  limit: number,
  loraId: string | undefined,
): Promise<ReadLines> {
  const newest: HistoryEvent[] = [];
  let skippedLines = 0;
  if (limit === 0) return { events: newest, skippedLines };
  const take = (line: Buffer): boolean => {
    const texts = linesOf(line.toString('utf8'));
    for (let i = texts.length - 1; i >= 0; i--) {
      if (texts[i].trim() === '') continue;
      const ev = parseHistoryLine(texts[i]);
      if (!ev) skippedLines++;
      else if (loraId === undefined || ev.lora_id === loraId) newest.push(ev);
      if (newest.length >= limit) return true;
    }
    return false;
  };
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(TAIL_CHUNK);
    // [pos, pos + pending.length) is the start of a line whose end has been seen; the region read
    // so far is followed by a line end (the file's last '\n' is left out at the start).
    let pos = complete - 1;
    let pending = Buffer.alloc(0);
    while (pos > 0 || pending.length) {
      const start = Math.max(0, pos - TAIL_CHUNK);
      const { bytesRead } = await fh.read(buf, 0, pos - start, start);
      // A short read means the file shrank under us: what is gone is treated as absent.
      const joined = Buffer.concat([buf.subarray(0, bytesRead), pending]);
      let end = joined.length;
      for (
        let nl = end > 0 ? joined.lastIndexOf(NL, end - 1) : -1;
        nl >= 0;
        nl = end > 0 ? joined.lastIndexOf(NL, end - 1) : -1
      ) {
        if (take(joined.subarray(nl + 1, end))) return { events: newest.reverse(), skippedLines };
        end = nl;
      }
      if (start === 0 || bytesRead < pos - start) {
        if (take(joined.subarray(0, end))) return { events: newest.reverse(), skippedLines };
        break;
      }
      pending = Buffer.from(joined.subarray(0, end));
      pos = start;
    }
    return { events: newest.reverse(), skippedLines };
  } finally {
    await fh.close();
  }
}

export class History {
  readonly path: string;
  /** Where syncCount stopped: the log's inode, the offset past the last line counted, the count. */
  private syncs: { ino: number; offset: number; count: number } | undefined;

  constructor(workspaceRoot: string) {
    this.path = join(resolve(workspaceRoot), HISTORY_DIR, HISTORY_FILE);
  }

  /**
   * Appends `events` as one write of whole lines, then flushes. Repairs a torn last line first and
   * creates `.lora-sync/` if needed. Throws a TypeError (writing nothing) for an event without
   * string `time`/`lora_id` or with an unknown kind, since `read` would silently drop it.
   */
  append(events: HistoryEvent[]): Promise<void> {
    if (events.length === 0) return Promise.resolve();
    let data: Buffer;
    try {
      data = serialise(events);
    } catch (e) {
      return Promise.reject(e); // callers await; a synchronous throw would escape a .catch()
    }
    // In-process queue, then a lock file shared with other processes (the CLI beside the
    // extension): one process's repair must never cut another's append short.
    return serialised(this.path, () =>
      this.crossProcess(async () => {
        const { existed } = await this.repairNow();
        const dir = dirname(this.path);
        const madeDir = existed ? undefined : await ensureRealDir(dir);
        const fh = await open(this.path, APPEND_NO_FOLLOW, 0o666);
        try {
          const before = (await fh.stat()).size;
          try {
            faultPoint('history:write', this.path);
            let off = 0;
            while (off < data.length) off += (await fh.write(data, off, data.length - off)).bytesWritten;
            faultPoint('history:written', this.path);
            await fh.datasync();
          } catch (e) {
            // Leave nothing of a failed append behind (best effort: e.g. ENOSPC may let truncate work).
            await fh.truncate(before).catch(() => undefined);
            throw e;
          }
        } finally {
          await fh.close();
        }
        // A new file's (and new folder's) directory entry is only durable once its parent is flushed.
        if (!existed) await fsyncDir(dir);
        if (madeDir !== undefined) await fsyncDir(dirname(madeDir));
      }),
    );
  }

  private async crossProcess<T>(fn: () => Promise<T>): Promise<T> {
    const made = await ensureRealDir(dirname(this.path));
    if (made !== undefined) await fsyncDir(dirname(made)); // the new folder's entry is durable
    return withLockFile(`${this.path}.lock`, fn);
  }

  /**
   * All valid events, oldest first. Only the bytes up to the last '\n' seen at the start are read,
   * so an append running at the same time is either wholly absent or (rarely) counted as one skipped
   * torn line — never half-parsed. With a `limit`, the file is read backwards from its end until
   * that many events are found: the cost follows the limit, not the log (a busy workspace's log grows
   * by megabytes a day, and the history view asks for its newest events often). `skippedLines` then
   * counts the unreadable lines among those read.
   */
  async read(opts: HistoryReadOptions = {}): Promise<HistoryReadResult> {
    const limit = opts.limit === undefined || Number.isNaN(opts.limit) ? Infinity : Math.max(0, Math.floor(opts.limit));
    const bounds = await lineBoundary(this.path);
    if (!bounds) return { events: [], skippedLines: 0 };
    const torn = bounds.complete < bounds.size ? 1 : 0;
    if (bounds.complete === 0) return { events: [], skippedLines: torn };
    const r = Number.isFinite(limit)
      ? await readNewest(this.path, bounds.complete, limit, opts.loraId)
      : await readAll(this.path, bounds.complete, opts.loraId);
    return { events: r.events, skippedLines: r.skippedLines + torn };
  }

  /**
   * How many SYNC events synced at least one copy (the stats' `total_syncs_performed`). Counted once,
   * then only over what was appended since: the log is append-only, so the count of its first bytes
   * never changes. A log that was replaced, emptied or cut short is counted again from the start.
   */
  async syncCount(): Promise<number> {
    const fh = await openToRead(this.path);
    if (!fh) return 0;
    try {
      const st = await fh.stat();
      const complete = await endOfLastLine(fh, st.size);
      let c = this.syncs;
      if (!c || c.ino !== st.ino || c.offset > complete || !(await endsLineAt(fh, c.offset)))
        c = { ino: st.ino, offset: 0, count: 0 };
      const count = c.count + (complete > c.offset ? await countSyncs(fh, c.offset, complete) : 0);
      this.syncs = { ino: st.ino, offset: complete, count };
      return count;
    } finally {
      await fh.close();
    }
  }

  /** If the file does not end with '\n', truncates it to its last complete line. Returns the bytes dropped. */
  repair(): Promise<number> {
    return serialised(this.path, () => this.crossProcess(async () => (await this.repairNow()).dropped));
  }

  /** `repair` without queueing: callers already hold this file's place in the queue. */
  private async repairNow(): Promise<{ dropped: number; existed: boolean }> {
    let fh: FileHandle;
    try {
      fh = await open(this.path, READ_WRITE_NO_FOLLOW);
    } catch (e) {
      if (isNotFound(e)) return { dropped: 0, existed: false };
      throw e;
    }
    try {
      const { size } = await fh.stat();
      const complete = await endOfLastLine(fh, size);
      if (complete === size) return { dropped: 0, existed: true };
      await fh.truncate(complete);
      await fh.datasync();
      return { dropped: size - complete, existed: true };
    } finally {
      await fh.close();
    }
  }
}
