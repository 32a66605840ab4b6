/**
 * Mutation fuzzing of the zip reader, the pickle decoder, the safetensors reader and the engine's
 * whole read of a checkpoint file (open, CRCs, fingerprints, metadata, identity), starting from real
 * files: what torch.save wrote (test/fixtures/torch, the torch-written workspace), a copy rewritten
 * with DEFLATE by Python's zipfile, pickles of protocols 0-5 and safetensors files written by plain
 * Python. A fifth target, planted, puts an unsafe global near the start of a pickle, a torch zip's
 * data.pkl or a legacy checkpoint and mutates only the bytes after it: the safety scan and the engine's
 * read must report that global every time. Mutations (fuzzCases.ts): bit flips, interesting bytes, random runs, truncations,
 * extensions, splices across seeds, deletions, and lies in the length, offset and count fields the
 * readers trust. Each case is seeded by (target, seed, index), so a failure names how to replay it.
 *
 * Per case: only FormatError may come out (never a TypeError, RangeError...); it finishes within a
 * time bound (a case that stops making progress is a hang: its worker is killed and the case named);
 * no single Buffer larger than a bound (64 KiB + 1100 x the input: a deflate stream's best ratio) is
 * allocated, and the worker's heap stays under a hard limit (resourceLimits). CI runs a sample,
 * LORA_SYNC_FAULTS_LONG=1 250,000.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { ZipReader } from '../../server/src/formats/zip/zipReader';
import { LONG, setFigure } from './figures';
import { listTree, PY, REPO, tempDir } from './support';
import type { Seed, Target } from './fuzzCases';
import type { FuzzResult } from './fuzzWorker';

const SEC = 'fuzzing';
const SEED = Number(process.env.LORA_SYNC_FUZZ_SEED ?? 0x10a5);
const CASES: Record<Target, number> = LONG
  ? { zip: 70_000, pickle: 70_000, safetensors: 40_000, checkpoint: 70_000, planted: 40_000 }
  : { zip: 6_000, pickle: 6_000, safetensors: 4_000, checkpoint: 4_000, planted: 4_000 };
/** A case slower than this fails the run; one that makes no progress this long is a hang. */
const CASE_BOUND_MS = 2_000;
const HANG_MS = 20_000;
const HEAP_LIMIT_MB = 512;
const allocBound = (inputBytes: number) => 64 * 1024 + 1100 * inputBytes;

const PYTHON_SEEDS = String.raw`
import json, pickle, struct, sys, zipfile, datetime, collections
out = sys.argv[1]
# Pickles of every protocol, with the kinds of values checkpoints hold.
value = {"id": "lora_x", "ints": [0, -1, 2**31, -2**63, 2**100], "floats": (0.5, float("inf")), "bytes": b"\x00\xff",
         "set": {1, 2}, "nested": collections.OrderedDict(a=[{"b": None}]), "when": datetime.datetime(2025, 12, 4, 10, 0),
         "text": "T\u00fcrk\u00e7e \U0001F3AF", "shared": None}
value["shared"] = value["ints"]
for p in range(6):
    open("%s/p%d.pkl" % (out, p), "wb").write(pickle.dumps(value, protocol=p))
# safetensors, written the way the format says (8-byte length, JSON header, data).
def st(path, tensors, meta):
    header, data = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if meta is not None:
        header["__metadata__"] = meta
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + data)
st(out + "/lora.safetensors", {"layers.0.lora_A": ("F32", [4, 16], bytes(range(256))), "layers.0.lora_B": ("F16", [16, 4], bytes(128))},
   {"id": "lora_x", "name": "LoRA_X", "team": "Galatasaray", "sync_info": json.dumps({"last_sync_match": 45})})
st(out + "/dtypes.safetensors", {t: (t, [2], bytes(2 * n)) for t, n in [("F64", 8), ("I64", 8), ("I32", 4), ("BF16", 2), ("U8", 1), ("BOOL", 1), ("I8", 1)]}, None)
st(out + "/empty.safetensors", {"e": ("F32", [0, 3], b"")}, {})
# A torch checkpoint rewritten with DEFLATE records (Python's zipfile; torch itself writes STORED).
src = zipfile.ZipFile(sys.argv[2])
with zipfile.ZipFile(out + "/deflated.pt", "w", zipfile.ZIP_DEFLATED) as z:
    for info in src.infolist():
        z.writestr(info.filename, src.read(info.filename))
`;

describe('fuzzing the readers with mutations of real files', function () {
  this.timeout(LONG ? 3_600_000 : 600_000);
  let tmp: string;
  const seeds: Record<Target, Seed[]> = { zip: [], pickle: [], safetensors: [], checkpoint: [], planted: [] };

  before(async () => {
    tmp = await tempDir('lora-fuzz-');
    const torchDir = join(REPO, 'test', 'fixtures', 'torch');
    const files: string[] = [];
    for (const n of readdirSync(torchDir)) if (n.endsWith('.pt')) files.push(join(torchDir, n));
    const ws = join(REPO, 'test', 'fixtures', 'workspace');
    for (const rel of await listTree(ws)) if (rel.endsWith('.pt')) files.push(join(ws, rel));
    const py = spawnSync(PY, ['-c', PYTHON_SEEDS, tmp, join(torchDir, 'seed_source.pt')], {
      encoding: 'utf8',
    });
    if (py.status === 0) {
      for (const n of readdirSync(tmp)) {
        const p = join(tmp, n);
        if (n.endsWith('.pkl')) seeds.pickle.push({ name: n, bytes: readFileSync(p) });
        if (n.endsWith('.safetensors')) seeds.safetensors.push({ name: n, bytes: readFileSync(p) });
        if (n.endsWith('.pt')) files.push(p);
      }
    } else
      console.log(
        `      (no /usr/bin/python3: pickle and safetensors seeds from torch files only) ${py.error?.message ?? py.stderr}`,
      );
    for (const f of files) {
      const bytes = await readFile(f);
      const name = f.slice(f.lastIndexOf('/') + 1);
      if (bytes.length > 64 * 1024 || bytes.length === 0) continue;
      seeds.checkpoint.push({ name, bytes });
      if (bytes.subarray(0, 2).toString() !== 'PK') continue;
      seeds.zip.push({ name, bytes });
      try {
        const z = await ZipReader.open(f);
        const pkl = z.records.find((r) => r.name.endsWith('/data.pkl'));
        if (pkl) {
          seeds.pickle.push({ name: `${name}:data.pkl`, bytes: await z.read(pkl) });
          seeds.planted.push({ name: `${name}:data.pkl`, bytes: await z.read(pkl), zip: bytes });
        }
        await z.close();
      } catch {
        // a deliberately broken fixture: a zip seed only
      }
    }
    for (const s of seeds.safetensors) seeds.checkpoint.push(s);
    // Planted: an unsafe global planted into pickles of every protocol and into a legacy checkpoint's
    // object pickle, the bytes after it then mutated; the global must always be reported.
    // (Zip data.pkl seeds were added above with their zip: the plant is written back into the checkpoint.)
    const legacy = seeds.checkpoint.filter((s) => s.name === 'legacy.pt');
    seeds.planted.push(...seeds.pickle.filter((s) => !s.name.endsWith(':data.pkl')));
    for (let i = 0; i < 8; i++) seeds.planted.push(...legacy); // weighted: one file, as many cases as a kind
    if (!seeds.safetensors.length) {
      // Without Python: what our own writer makes, so the target still runs.
      const { writeSafetensors } = await import('../../server/src/formats/safetensors');
      const { open } = await import('node:fs/promises');
      const p = join(tmp, 'ours.safetensors');
      const fh = await open(p, 'w');
      await writeSafetensors(fh, [{ name: 'lora_A', dtype: 'F32', shape: [2, 2], data: new Uint8Array(16) }], {
        id: 'x',
      });
      await fh.close();
      seeds.safetensors.push({ name: 'ours.safetensors', bytes: await readFile(p) });
    }
    console.log(
      `      seeds: ${Object.entries(seeds)
        .map(([t, s]) => `${t} ${s.length}`)
        .join(', ')}; seed ${SEED}`,
    );
  });
  after(() => rm(tmp, { recursive: true, force: true }));

  /** Runs cases [from, to) of a target on a worker, killing it (and naming the case) if it hangs. */
  function runSlice(target: Target, from: number, to: number, lane: number): Promise<FuzzResult> {
    const progress = new SharedArrayBuffer(8);
    const current = new Int32Array(progress);
    Atomics.store(current, 0, from);
    const entry = join(__dirname, 'fuzzWorker.ts');
    const w = new Worker(`require('tsx/cjs'); require(${JSON.stringify(entry)});`, {
      eval: true,
      workerData: {
        target,
        seeds: seeds[target],
        seed: SEED,
        from,
        to,
        scratch: join(tmp, `scratch-${lane}.pt`),
        progress,
      },
      resourceLimits: { maxOldGenerationSizeMb: HEAP_LIMIT_MB },
    });
    return new Promise((resolve, reject) => {
      let last = -1;
      let since = Date.now();
      const watch = setInterval(() => {
        const now = Atomics.load(current, 0);
        if (now !== last) {
          last = now;
          since = Date.now();
        } else if (Date.now() - since > HANG_MS) {
          clearInterval(watch);
          void w.terminate();
          reject(new Error(`hang: ${target} case ${now} (seed ${SEED}) made no progress for ${HANG_MS} ms`));
        }
      }, 250);
      w.once('message', (r: FuzzResult) => {
        clearInterval(watch);
        void w.terminate();
        resolve(r);
      });
      w.once('error', (e) => {
        clearInterval(watch);
        reject(new Error(`${target} worker died near case ${Atomics.load(current, 0)} (seed ${SEED}): ${e.message}`));
      });
    });
  }

  const totals = { cases: 0, slowest: { ms: 0, where: '' }, maxAllocRatio: 0, maxAlloc: 0, maxHeapMb: 0 };
  after(() => {
    setFigure(SEC, 'cases', totals.cases);
    setFigure(SEC, 'slowest case (ms)', Math.round(totals.slowest.ms * 10) / 10);
    setFigure(SEC, 'slowest', totals.slowest.where);
    setFigure(SEC, 'largest allocation in a case (bytes)', totals.maxAlloc);
    setFigure(SEC, 'worker heap peak (MB)', Math.round(totals.maxHeapMb));
    setFigure(SEC, 'crashes', 0);
    setFigure(SEC, 'hangs', 0);
  });

  for (const target of ['zip', 'pickle', 'safetensors', 'checkpoint', 'planted'] as Target[]) {
    it(`${target}: ${CASES[target].toLocaleString('en')} mutated inputs, only typed errors, each within ${CASE_BOUND_MS} ms and bounded memory`, async () => {
      await mkdir(tmp, { recursive: true });
      const n = CASES[target];
      const t0 = performance.now();
      // Two workers (this machine has two cores), each half of the cases.
      const offset = { zip: 0, pickle: 1e7, safetensors: 2e7, checkpoint: 3e7, planted: 4e7 }[target];
      const halves = await Promise.all([
        runSlice(target, offset, offset + n / 2, 0),
        runSlice(target, offset + n / 2, offset + n, 1),
      ]);
      const wall = performance.now() - t0;
      const cases = halves.reduce((a, r) => a + r.cases, 0);
      const parsed = halves.reduce((a, r) => a + r.parsed, 0);
      const codes: Record<string, number> = {};
      for (const r of halves) for (const [c, k] of Object.entries(r.codes)) codes[c] = (codes[c] ?? 0) + k;
      const slowest = halves.reduce((a, r) => (r.slowest.ms > a.slowest.ms ? r : a)).slowest;
      const alloc = halves.reduce((a, r) => (r.maxAlloc.bytes > a.maxAlloc.bytes ? r : a)).maxAlloc;
      const failures = halves.flatMap((r) => r.failures);
      console.log(
        `      ${cases} cases in ${(wall / 1000).toFixed(1)} s: ${parsed} parsed, rejected ${JSON.stringify(codes)}; slowest ${slowest.ms.toFixed(1)} ms (case ${slowest.i}: ${slowest.seed} ${slowest.ops.join(' ')}); largest allocation ${alloc.bytes} B for a ${alloc.inputBytes} B input; heap ≤ ${Math.round(Math.max(...halves.map((r) => r.maxHeapMb)))} MB`,
      );
      assert.deepEqual(
        failures.map(
          (f) =>
            `case ${f.i} (seed ${SEED}, ${f.seed}, ${f.ops.join(' ')}): ${f.error.split('\n').slice(0, 3).join(' | ')}`,
        ),
        [],
        'untyped errors',
      );
      assert.equal(cases, n);
      assert.ok(slowest.ms < CASE_BOUND_MS, `case ${slowest.i} took ${slowest.ms} ms`);
      assert.ok(
        alloc.bytes <= allocBound(alloc.inputBytes),
        `case ${alloc.i} allocated ${alloc.bytes} bytes for ${alloc.inputBytes} of input`,
      );
      assert.ok(Object.keys(codes).length >= 2 && parsed > 0, 'the mutations should both break and keep files');
      totals.cases += cases;
      if (slowest.ms > totals.slowest.ms) totals.slowest = { ms: slowest.ms, where: `${target} case ${slowest.i}` };
      totals.maxAlloc = Math.max(totals.maxAlloc, alloc.bytes);
      totals.maxHeapMb = Math.max(totals.maxHeapMb, ...halves.map((r) => r.maxHeapMb));
      setFigure(SEC, `${target} cases`, cases);
    });
  }
});
