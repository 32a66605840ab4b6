/**
 * Spreads the leaves of one large record over the main thread and worker threads (one fewer than
 * the cores, so the main thread does its share). The leaf digests and the CRCs of the parts
 * (joined with crc32Combine) are the same as a single pass would give: the digest does not depend
 * on how the work was split.
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { FileHandle } from 'node:fs/promises';
import { hashRange, LEAF, RangeJob, RangeResult } from './leafHash';
import { crc32Combine } from './crc32Combine';

interface Pending { resolve: (r: RangeResult) => void; reject: (e: Error) => void }

class LeafWorker {
  private readonly w: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  dead = false;
  constructor(entry: string, evalCode: boolean) {
    this.w = new Worker(entry, { eval: evalCode });
    this.w.on('message', (m: { id: number; result?: RangeResult; error?: string }) => {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (this.pending.size === 0) this.w.unref();
      if (!p) return;
      if (m.error !== undefined) p.reject(new Error(m.error));
      else p.resolve({ ...m.result!, leaves: new Uint8Array(m.result!.leaves) });
    });
    this.w.on('error', (e) => { this.dead = true; this.failAll(e); });
    this.w.on('exit', () => { this.dead = true; this.failAll(new Error('leaf hash worker exited')); });
    // After the listeners (adding a 'message' listener refs the port again).
    this.w.unref();
  }
  private failAll(e: Error): void {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }
  run(job: RangeJob): Promise<RangeResult> {
    if (this.dead) return Promise.reject(new Error('leaf hash worker is not running'));
    const id = this.nextId++;
    // Referenced only while it owes an answer: idle workers never keep a process alive.
    if (this.pending.size === 0) this.w.ref();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.w.postMessage({ id, job });
    });
  }
  terminate(): Promise<number> {
    return this.w.terminate();
  }
}

let workers: LeafWorker[] | undefined;
const stats = { workerJobs: 0, fallbacks: 0 };

/** How many parts workers hashed, and how many had to be redone on the main thread. */
export function leafPoolStats(): Readonly<typeof stats> {
  return { ...stats };
}

/**
 * Where the worker script is: beside the bundle in dist/, or (tests under tsx) the TypeScript
 * source, loaded through a one-line CommonJS shim because Worker will not start a .ts file itself.
 */
function workerEntry(): { entry: string; evalCode: boolean } | undefined {
  const js = join(__dirname, 'leafHashWorker.js');
  if (existsSync(js)) return { entry: js, evalCode: false };
  const ts = join(__dirname, 'leafHashWorker.ts');
  if (existsSync(ts)) return { entry: `require('tsx/cjs'); require(${JSON.stringify(ts)});`, evalCode: true };
  return undefined;
}

function pool(): LeafWorker[] {
  if (workers?.some((w) => w.dead)) workers = undefined; // a crashed worker is replaced
  if (!workers) {
    const where = workerEntry();
    const n = Math.max(0, Math.min(availableParallelism(), 8) - 1);
    workers = where ? Array.from({ length: n }, () => new LeafWorker(where.entry, where.evalCode)) : [];
  }
  return workers;
}

/** Stops the workers (tests, server shutdown). The next call starts new ones. */
export async function shutdownLeafPool(): Promise<void> {
  const w = workers;
  workers = undefined;
  await Promise.all((w ?? []).map((x) => x.terminate()));
}

/**
 * CRC-32 and leaf digests of [start, end) of the open file, the leaves counted from `start`.
 * Parts are whole leaves, so every thread hashes the same leaves a single pass would.
 */
export async function hashRangeParallel(fh: FileHandle, start: number, end: number): Promise<RangeResult> {
  const ws = pool();
  const leaves = Math.ceil((end - start) / LEAF);
  const parts = Math.min(ws.length + 1, leaves);
  if (parts <= 1) return hashRange(fh, { fd: fh.fd, start, end });
  const per = Math.ceil(leaves / parts);
  const jobs: RangeJob[] = [];
  for (let i = 0; i < parts; i++) {
    const s = start + i * per * LEAF;
    if (s >= end) break;
    jobs.push({ fd: fh.fd, start: s, end: Math.min(end, s + per * LEAF) });
  }
  // The main thread takes the first part; workers the rest. A worker that fails (it should not)
  // costs speed, never a result: its part is redone here.
  const results = await Promise.all(jobs.map((j, i) => {
    if (i === 0) return hashRange(fh, j);
    return ws[i - 1].run(j).then(
      (r) => { stats.workerJobs++; return r; },
      () => { stats.fallbacks++; return hashRange(fh, j); },
    );
  }));
  let crc = results[0].crc;
  for (let i = 1; i < results.length; i++) crc = crc32Combine(crc, results[i].crc, results[i].length);
  return { crc, length: end - start, leaves: Buffer.concat(results.map((r) => r.leaves)) };
}
