/**
 * `npm run bench:format`: parse + fingerprint throughput of our reader, side by side in the same run
 * with `cat` (the I/O floor) and `sha256sum` over the same bytes. Page cache warm for all three
 * (each is run once before timing); best of N runs. Results are printed as a Markdown table to paste
 * into BENCHMARKS.md. Never a timed test: the figures are ratios measured together.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import fg from 'fast-glob';
import { build } from 'esbuild';
import * as N from '../../server/src/formats/pickle/nodes';
import type { PyNode } from '../../server/src/formats/pickle/nodes';
import { TreeBuilder, py, pyFloat } from '../../server/src/demo/loraTree';
import { writeTorchCheckpoint, torchPrefixFor } from '../../server/src/formats/torch/ptWriter';
import { atomicWrite } from '../../server/src/io/atomicWrite';
import { generateSeedWorkspace } from '../../server/src/demo/seedWorkspace';
import { DIGEST_ALG } from '../../server/src/formats/fingerprint';
import { NATIVE_HASHERS } from './nativeHashers';
import { decodePickle } from '../../server/src/formats/pickle/decoder';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const BIG_MB = Number(process.env.BENCH_BIG_MB ?? 200);
const ROOT = join(__dirname, '..', '..');

async function writeBigAdapter(path: string, mb: number): Promise<void> {
  // 4 layers x (A, B) float32 tensors adding up to `mb` megabytes: a large LoRA adapter.
  const b = new TreeBuilder();
  const per = Math.floor((mb * 1e6) / 8 / 4); // elements per tensor
  const width = 4096;
  const rank = Math.max(1, Math.floor(per / width));
  const params: Array<[PyNode, PyNode]> = [];
  for (let l = 0; l < 4; l++) {
    for (const ab of ['A', 'B']) {
      const data = new Uint8Array(rank * width * 4);
      randomFillSync(data);
      for (let i = 3; i < data.length; i += 4) data[i] &= 0x3f; // keep floats finite and small
      params.push([
        N.str(`layers.${l}.lora_${ab}`),
        b.tensor('float32', ab === 'A' ? [rank, width] : [width, rank], data),
      ]);
    }
  }
  const root = N.dict([
    [N.str('lora_params'), N.dict(params)],
    [N.str('metadata'), py({ id: 'lora_big', name: 'LoRA_big', score: pyFloat(0.5) })],
  ]);
  const storages = new Map([...b.storages].map(([k, data]) => [k, { kind: 'buffer' as const, data }]));
  await atomicWrite(path, (fh) => writeTorchCheckpoint(fh, { prefix: torchPrefixFor(path), root, storages }), {
    noSync: true,
  });
}

function timeCmd(cmd: string, args: string[]): number {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'], maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`${cmd} failed`);
  return performance.now() - t0;
}

let fpBundle = '';
function ours(files: string[], backend: 'native' | 'portable'): { ms: number; maxRssMB: number; backend: string } {
  // Bundled and run with plain node, as the server runs, so the memory figure is the reader's own.
  // NODE_OPTIONS cleared: this script runs under tsx, whose loader the child must not inherit.
  // NODE_PATH: the bundle lives outside the repo, and loads the native hashers from its node_modules.
  const env = {
    ...process.env,
    NODE_OPTIONS: '',
    NODE_PATH: join(ROOT, 'node_modules'),
    LORA_SYNC_HASH_BACKEND: backend === 'portable' ? 'portable' : '',
  };
  const r = JSON.parse(
    execFileSync(process.execPath, [fpBundle, ...files], { encoding: 'utf8', cwd: ROOT, maxBuffer: 1 << 26, env }),
  );
  if (r.backend !== backend) throw new Error(`asked for the ${backend} hashers, the child used ${r.backend}`);
  return r;
}

function best<T>(n: number, f: () => T, key: (t: T) => number): T {
  let b: T | undefined;
  for (let i = 0; i < n; i++) {
    const r = f();
    if (!b || key(r) < key(b)) b = r;
  }
  return b!;
}

async function measure(label: string, files: string[]) {
  const bytes = (await Promise.all(files.map((f) => stat(f)))).reduce((a, s) => a + s.size, 0);
  // xargs-free: pass the file list directly (the small set stays under ARG_MAX).
  timeCmd('cat', files); // warm the page cache
  const cat = best(
    RUNS,
    () => timeCmd('sh', ['-c', 'cat "$@" > /dev/null', 'cat', ...files]),
    (x) => x,
  );
  const sha = best(
    RUNS,
    () => timeCmd('sha256sum', files),
    (x) => x,
  );
  const us = best(
    RUNS,
    () => ours(files, 'native'),
    (x) => x.ms,
  );
  const portable = best(
    RUNS,
    () => ours(files, 'portable'),
    (x) => x.ms,
  );
  // One file: the CPU the two required passes (CRC32 and XXH64) take on bytes already in memory.
  const floor = files.length === 1 ? ours(['--floor', files[0]], 'native').ms : undefined;
  return {
    label,
    files: files.length,
    mb: bytes / 1e6,
    cat,
    sha,
    ours: us.ms,
    rss: us.maxRssMB,
    portable: portable.ms,
    portableRss: portable.maxRssMB,
    floor,
  };
}

async function main() {
  const dir = join(process.env.BENCH_DIR ?? tmpdir(), 'lora-bench-format');
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  try {
    fpBundle = join(dir, 'fp-one.js');
    await build({
      entryPoints: [join(__dirname, 'fp-one.ts')],
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'cjs',
      outfile: fpBundle,
      logLevel: 'warning',
      external: NATIVE_HASHERS,
    });
    console.log(`generating in ${dir} ...`);
    const small = join(dir, 'small');
    await mkdir(small);
    await generateSeedWorkspace(small, { loras: 400, copies: 1600, problems: {} });
    const smallFiles = (await fg('**/*.pt', { cwd: small, absolute: true })).filter((f) => !f.includes('README'));
    const bigFiles: string[] = [];
    for (let i = 0; i < 3; i++) {
      const p = join(dir, `big_${i}.pt`);
      await writeBigAdapter(p, BIG_MB);
      bigFiles.push(p);
    }
    const rows = [
      await measure(`${smallFiles.length} small LoRAs`, smallFiles),
      await measure(`1 adapter of ${BIG_MB} MB`, bigFiles.slice(0, 1)),
      await measure(`3 adapters of ${BIG_MB} MB`, bigFiles),
    ];
    const f = (x: number) => x.toFixed(0);
    const r = (x: number) => x.toFixed(2);
    console.log(
      `\n| set | files | MB | cat ms | sha256sum ms | ours ms | ours / cat | ours / sha256sum | ours peak RSS MB | portable ms | portable / cat | portable peak RSS MB |`,
    );
    console.log(`|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|`);
    for (const x of rows)
      console.log(
        `| ${x.label} | ${x.files} | ${x.mb.toFixed(1)} | ${f(x.cat)} | ${f(x.sha)} | ${f(x.ours)} | ${r(x.ours / x.cat)} | ${r(x.ours / x.sha)} | ${x.rss.toFixed(0)} | ${f(x.portable)} | ${r(x.portable / x.cat)} | ${x.portableRss.toFixed(0)} |`,
      );
    for (const x of rows) {
      if (x.floor !== undefined)
        console.log(
          `\n${x.label}: CRC32 + XXH64 of the bytes already in memory (no reading) take ${f(x.floor)} ms, ${r(x.floor / x.cat)}x cat: the floor of the two passes on one core.`,
        );
    }
    console.log(
      `\n(best of ${RUNS}; "ours" = open + decode pickle + CRC32 of every record + digest of every tensor (${DIGEST_ALG}) with the native hashers, "portable" the same with zlib + WebAssembly, each in its own Node process; cat and sha256sum over the same files, page cache warm)`,
    );
    decoderVsCPython();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The pickle decoder against CPython's C unpickler on the same ~0.9 MB pickle (12,000 small dicts),
 * best of N in one process each: a throughput ratio, measured side by side (it used to be a timed
 * unit test, which a shared machine made flaky).
 */
function decoderVsCPython(): void {
  const script = `
import pickle, sys, time
big = [{'name': 'layer.%d.weight' % i, 'shape': (i, i + 1), 'scale': i * 0.5, 'flag': i % 2 == 0, 'id': i * 1000003} for i in range(12000)]
data = pickle.dumps(big, protocol=2)
sys.stdout.buffer.write(data)
best = min((lambda t0: (pickle.loads(data), time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(${RUNS}))
sys.stderr.write('%f' % (best * 1000))
`;
  const r = spawnSync('/usr/bin/python3', ['-c', script], { maxBuffer: 1 << 26 });
  if (r.status !== 0) {
    console.log('\n(pickle decoder vs CPython: no /usr/bin/python3, skipped)');
    return;
  }
  const data = r.stdout;
  const cpython = Number(r.stderr.toString());
  let best = Infinity;
  for (let i = 0; i < RUNS + 1; i++) {
    const t0 = performance.now();
    decodePickle(data);
    if (i > 0) best = Math.min(best, performance.now() - t0); // the first run warms the JIT
  }
  console.log(
    `\npickle decoder, ${(data.length / 1e6).toFixed(2)} MB pickle of 12,000 dicts: ours ${best.toFixed(1)} ms, CPython's C unpickler ${cpython.toFixed(1)} ms, ratio ${(best / cpython).toFixed(2)} (best of ${RUNS})`,
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
