/**
 * Reading many files off the main thread: parsing and hashing a checkpoint is CPU work (about
 * 0.15 ms for a small LoRA), so a scan of many thousands of files is spread over worker threads —
 * one fewer than the cores — and the main thread, in batches. Smaller scans stay on the main thread
 * (see POOL_MIN_FILES). The pool is started on first need and kept (unref'd).
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { EngineConfig } from './config';
import { type FileEntry, readEntry } from './loraFile';
import type { FileKey } from './indexCache';

/** A file to read, with the key the caller saw (see readEntry). */
export interface FileToRead {
  abs: string;
  rel: string;
  key?: FileKey;
}

export type ReadResult = { ok: true; entry: FileEntry } | { ok: false; code: string; message: string };

/**
 * Below this many files to read, workers do not pay for themselves. A worker is a second V8 isolate
 * that compiles the whole read path again (V8's compiler and GC threads took a third of a 6,000-file
 * scan's CPU) and keeps its own heap (~50 MB). With two cores there is no core to spare for it:
 * measured on the project machine (2 cores, shared), 6,070 files took 1.43 s on the main thread
 * alone and 1.55 s with a worker (medians of 5), 60,571 files 11.9–13.1 s and 14.2–14.7 s, and the
 * worker's heap put the peak at 272–328 MB against 243 MB. So two cores read on the main thread (unless
 * a scan is huge); more cores use workers.
 */
export const POOL_MIN_FILES = availableParallelism() > 2 ? 400 : 250_000;
/** Files one thread reads per batch; the main thread gives the event loop a turn after each. */
export const BATCH = 48;

class EntryWorker {
  private readonly w: Worker;
  private readonly pending = new Map<number, { resolve: (r: ReadResult[]) => void; reject: (e: Error) => void }>();
  private nextId = 0;
  dead = false;
  constructor(entry: string, evalCode: boolean) {
    // A smaller young generation than the default: the worker keeps nothing between batches, and on a
    // 60,000-file scan this took ~20 MB off the peak (272–316 MB against 296–328 MB).
    this.w = new Worker(entry, { eval: evalCode, resourceLimits: { maxYoungGenerationSizeMb: 8 } });
    this.w.on('message', (m: { id: number; entries: ReadResult[] }) => {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (this.pending.size === 0) this.w.unref();
      p?.resolve(m.entries);
    });
    const fail = (e: Error) => {
      this.dead = true;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    this.w.on('error', fail);
    this.w.on('exit', () => fail(new Error('entry worker exited')));
    this.w.unref(); // after the listeners: a 'message' listener refs the port again
  }
  run(cfg: EngineConfig, files: FileToRead[]): Promise<ReadResult[]> {
    if (this.dead) return Promise.reject(new Error('entry worker is not running'));
    const id = this.nextId++;
    if (this.pending.size === 0) this.w.ref(); // referenced only while it owes an answer
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.w.postMessage({ id, cfg, files });
    });
  }
  terminate(): Promise<number> {
    return this.w.terminate();
  }
}

let workers: EntryWorker[] | undefined;
const stats = { workerFiles: 0, mainFiles: 0, fallbacks: 0 };

/** How many files workers and the main thread read (tests check the workers did their share). */
export function entryPoolStats(): Readonly<typeof stats> {
  return { ...stats };
}

/** Beside the bundle in dist/, or (tests under tsx) the TypeScript source through a CommonJS shim. */
function workerEntry(): { entry: string; evalCode: boolean } | undefined {
  const js = join(__dirname, 'entryWorker.js');
  if (existsSync(js)) return { entry: js, evalCode: false };
  const ts = join(__dirname, 'entryWorker.ts');
  if (existsSync(ts)) return { entry: `require('tsx/cjs'); require(${JSON.stringify(ts)});`, evalCode: true };
  return undefined;
}

function pool(): EntryWorker[] {
  if (workers?.some((w) => w.dead)) workers = undefined;
  if (!workers) {
    const where = workerEntry();
    const n = Math.max(0, Math.min(availableParallelism(), 8) - 1);
    workers = where ? Array.from({ length: n }, () => new EntryWorker(where.entry, where.evalCode)) : [];
  }
  return workers;
}

export async function shutdownEntryPool(): Promise<void> {
  const w = workers;
  workers = undefined;
  await Promise.all((w ?? []).map((x) => x.terminate()));
}

async function readHere(cfg: EngineConfig, files: FileToRead[]): Promise<ReadResult[]> {
  const out: ReadResult[] = [];
  for (const f of files) {
    try {
      out.push({ ok: true, entry: await readEntry(f.abs, f.rel, cfg, f.key) });
    } catch (e) {
      out.push({ ok: false, code: (e as NodeJS.ErrnoException).code ?? 'IO_ERROR', message: (e as Error).message });
    }
  }
  return out;
}

/**
 * Reads the files into entries, in input order. The main thread and each worker take batches from
 * one queue, so a slow batch (a 200 MB file) never holds the others back. `each` (main thread) maps
 * each result as its batch arrives. A cancelled read leaves the files it did not reach undefined.
 */
export async function readEntries(
  cfg: EngineConfig,
  files: FileToRead[],
  opts: {
    useWorkers?: boolean;
    onBatch?: (n: number) => void;
    /** Asked before each batch: once true, no batch is started, and the files not read stay undefined. */
    cancelled?: () => boolean;
    each?: (r: ReadResult, f: FileToRead) => ReadResult;
  } = {},
): Promise<ReadResult[]> {
  const out = new Array<ReadResult>(files.length);
  const useWorkers = opts.useWorkers ?? files.length >= POOL_MIN_FILES;
  const ws = useWorkers ? pool() : [];
  let next = 0;
  // Batches small enough that every thread gets several, large enough to amortise a message.
  const batch = Math.max(4, Math.min(BATCH, Math.ceil(files.length / ((ws.length + 1) * 4))));
  const take = () => {
    if (opts.cancelled?.()) return undefined;
    const start = next;
    next = Math.min(files.length, next + batch);
    return start < files.length ? { start, batch: files.slice(start, next) } : undefined;
  };
  // `each` runs on the main thread as batches come in, between its own reads, rather than all at the end.
  const each = opts.each;
  const place = (start: number, rs: ReadResult[]) =>
    rs.forEach((r, i) => (out[start + i] = each ? each(r, files[start + i]) : r));
  const mainLoop = async () => {
    for (let t = take(); t; t = take()) {
      place(t.start, await readHere(cfg, t.batch));
      stats.mainFiles += t.batch.length;
      opts.onBatch?.(t.batch.length);
      // Small files are read with synchronous calls, so a batch never waits on the event loop: it gets
      // a turn after each batch. Without it a cold scan held the loop for its whole read (a second at
      // 6,000 files, eight at 60,000): the server answered no request, sent no progress and saw no
      // cancellation until the end, and a worker's answer (a message event) waited for it too.
      await nextTurn();
    }
  };
  const workerLoop = async (w: EntryWorker) => {
    for (let t = take(); t; t = take()) {
      let rs: ReadResult[];
      try {
        rs = await w.run(cfg, t.batch);
        stats.workerFiles += t.batch.length;
      } catch {
        // A worker that fails costs speed, never a result: the batch is read here.
        stats.fallbacks++;
        rs = await readHere(cfg, t.batch);
      }
      place(t.start, rs);
      opts.onBatch?.(t.batch.length);
    }
  };
  // A few batches in flight on the main thread hide its I/O waits; two per worker, so a worker starts
  // its next batch while the main thread is still busy with its own and has not read the answer yet.
  await Promise.all([mainLoop(), mainLoop(), ...ws.flatMap((w) => [workerLoop(w), workerLoop(w)])]);
  return out;
}
