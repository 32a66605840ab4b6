/**
 * A worker thread running one slice of fuzz cases for one target (fuzz.faults.test.ts starts it).
 * It publishes the case it is on in shared memory, so the parent can name the case that hangs and
 * kill the worker; it records the slowest case and the largest single Buffer allocated by a case
 * (Buffer.alloc* are wrapped here), and samples the heap.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { acceptable, caseRng, mutate, plant, runTarget, type Seed, type Target } from './fuzzCases';

interface Job {
  target: Target;
  seeds: Seed[];
  seed: number;
  from: number;
  to: number;
  scratch: string;
  progress: SharedArrayBuffer;
}
const job = workerData as Job;
const current = new Int32Array(job.progress);

let allocPeak = 0;
for (const name of ['alloc', 'allocUnsafe', 'allocUnsafeSlow'] as const) {
  const orig = Buffer[name] as (size: number, ...rest: unknown[]) => Buffer;
  (Buffer as unknown as Record<string, unknown>)[name] = (size: number, ...rest: unknown[]) => {
    if (size > allocPeak) allocPeak = size;
    return orig.call(Buffer, size, ...rest);
  };
}

export interface FuzzResult {
  target: Target;
  cases: number;
  parsed: number;
  /** Rejections by FormatError code; for the checkpoint target, what the engine made of each file. */
  codes: Record<string, number>;
  slowest: { ms: number; i: number; seed: string; ops: string[] };
  maxAlloc: { bytes: number; i: number; inputBytes: number };
  maxHeapMb: number;
  failures: Array<{ i: number; seed: string; ops: string[]; error: string }>;
}

(async () => {
  const r: FuzzResult = {
    target: job.target,
    cases: 0,
    parsed: 0,
    codes: {},
    slowest: { ms: 0, i: -1, seed: '', ops: [] },
    maxAlloc: { bytes: 0, i: -1, inputBytes: 0 },
    maxHeapMb: 0,
    failures: [],
  };
  for (let i = job.from; i < job.to; i++) {
    Atomics.store(current, 0, i);
    const rng = caseRng(job.seed, i);
    const m = job.target === 'planted' ? plant(job.seeds, rng) : mutate(job.target, job.seeds, rng); // outside the try: a mutator bug must not pass as a reader's
    allocPeak = 0;
    const t0 = performance.now();
    try {
      const what = await runTarget(job.target, m.bytes, job.scratch, (m as { zip?: Uint8Array }).zip);
      r.parsed++;
      if (what) r.codes[what] = (r.codes[what] ?? 0) + 1;
    } catch (e) {
      if (acceptable(e)) r.codes[e.code] = (r.codes[e.code] ?? 0) + 1;
      else if (r.failures.length < 20)
        r.failures.push({ i, seed: m.seed, ops: m.ops, error: String((e as Error)?.stack ?? e) });
    }
    const ms = performance.now() - t0;
    if (ms > r.slowest.ms) r.slowest = { ms, i, seed: m.seed, ops: m.ops };
    if (allocPeak > r.maxAlloc.bytes) r.maxAlloc = { bytes: allocPeak, i, inputBytes: m.bytes.length };
    if (i % 256 === 0) {
      const u = process.memoryUsage();
      r.maxHeapMb = Math.max(r.maxHeapMb, (u.heapUsed + u.arrayBuffers) / 2 ** 20);
    }
    r.cases++;
  }
  Atomics.store(current, 1, 1);
  parentPort!.postMessage(r);
})();
