/**
 * Reading many files off the main thread: parsing and hashing a checkpoint is CPU work (about
 * 0.3–0.5 ms for a small LoRA), so a scan of thousands of files is spread over worker threads —
 * one fewer than the cores — and the main thread, in batches. Small scans stay on the main thread:
 * a worker costs ~40 ms and ~40 MB to start. The pool is started on first need and kept (unref'd).
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { EngineConfig } from './config';
import { FileEntry, readEntry } from './loraFile';
import type { FileKey } from './indexCache';

/** A file to read, with the key the caller saw (see readEntry). */
export interface FileToRead { abs: string; rel: string; key?: FileKey }

export type ReadResult = { ok: true; entry: FileEntry } | { ok: false; code: string; message: string };

/** Below this many files to read, workers do not pay for their start-up. */
export const POOL_MIN_FILES = 400;
const BATCH = 48;

class EntryWorker {
  private readonly w: Worker;
  private readonly pending = new Map<number, { resolve: (r: ReadResult[]) => void; reject: (e: Error) => void }>();
  private nextId = 0;
  dead = false;
  constructor(entry: string, evalCode: boolean) {
    this.w = new Worker(entry, { eval: evalCode });
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
 * one queue, so a slow batch (a 200 MB file) never holds the others back.
 */
export async function readEntries(cfg: EngineConfig, files: FileToRead[], opts: { useWorkers?: boolean; onBatch?: (n: number) => void } = {}): Promise<ReadResult[]> {
  const out = new Array<ReadResult>(files.length);
  const useWorkers = opts.useWorkers ?? files.length >= POOL_MIN_FILES;
  const ws = useWorkers ? pool() : [];
  let next = 0;
  // Batches small enough that every thread gets several, large enough to amortise a message.
  const batch = Math.max(4, Math.min(BATCH, Math.ceil(files.length / ((ws.length + 1) * 4))));
  const take = () => {
    const start = next;
    next = Math.min(files.length, next + batch);
    return start < files.length ? { start, batch: files.slice(start, next) } : undefined;
  };
  const place = (start: number, rs: ReadResult[]) => rs.forEach((r, i) => (out[start + i] = r));
  const mainLoop = async () => {
    for (let t = take(); t; t = take()) {
      place(t.start, await readHere(cfg, t.batch));
      stats.mainFiles += t.batch.length;
      opts.onBatch?.(t.batch.length);
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
  // A few batches in flight on the main thread hide its I/O waits.
  await Promise.all([mainLoop(), mainLoop(), ...ws.map(workerLoop)]);
  return out;
}
