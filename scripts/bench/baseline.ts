/**
 * The regression guard of issue 13: cold status of the seed-like workspace with the engine as it was
 * before the issue (BENCH_BASELINE_REF, default 943b504: the last main commit before the layout engine's
 * merge ed975e3) and as it is now, on the same workspace, in one run. The old tree comes from
 * `git archive REF`; its own `scripts/bench/engine-child.ts` is bundled as the current one is (esbuild,
 * node_modules of this repo), and both children run `status-cold` (the `.lora-sync/` index removed
 * first), interleaved, the order alternating, best of BENCH_BASELINE_RUNS (default: BENCH_RUNS, at
 * least 5) each. A tree without that child has its
 * CLI bundled instead, and both CLIs are timed whole-process on `status --json` with `.lora-sync/`
 * removed before each run. Without git or the ref, the guard is skipped with a note.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { build } from 'esbuild';
import { NATIVE_HASHERS } from './nativeHashers';
import { ROOT, RUNS, ours, rows, runChild, settle, wall } from './common';

export interface Baseline {
  ref: string;
  sha: string;
  /** `child`: the tree's engine child (in-process time); `cli`: its CLI (whole-process time). */
  kind: 'child' | 'cli';
  path: string;
}

const TARGET = 1.1;
const DEFAULT_REF = '943b504';

/** The baseline engine, bundled under `work`, or undefined (with a printed note) when unavailable. */
export async function prepareBaseline(work: string): Promise<Baseline | undefined> {
  const ref = process.env.BENCH_BASELINE_REF ?? DEFAULT_REF;
  if (['', '0', 'none'].includes(ref)) {
    console.log('note: BENCH_BASELINE_REF=none: no before/after guard');
    return undefined;
  }
  const rev = spawnSync('git', ['-C', ROOT, 'rev-parse', '--verify', '--quiet', `${ref}^{commit}`], {
    encoding: 'utf8',
  });
  if (rev.status !== 0 || !rev.stdout) {
    console.log(`note: git or the commit ${ref} is not available here: the before/after guard is skipped`);
    return undefined;
  }
  const sha = rev.stdout.trim();
  const src = join(work, 'baseline-src');
  const out = join(work, 'baseline');
  await mkdir(src, { recursive: true });
  const x = spawnSync('sh', ['-c', 'git -C "$1" archive "$2" | tar -x -C "$3"', 'archive', ROOT, sha, src], {
    encoding: 'utf8',
  });
  if (x.status !== 0) {
    console.log(`note: git archive ${ref} failed (${x.stderr.trim()}): the before/after guard is skipped`);
    return undefined;
  }
  const child = join(src, 'scripts/bench/engine-child.ts');
  const worker = join(src, 'server/src/engine/entryWorker.ts');
  const kind = existsSync(child) ? 'child' : 'cli';
  const entryPoints: Record<string, string> =
    kind === 'child' ? { 'engine-child': child } : { cli: join(src, 'server/src/cli/main.ts') };
  if (existsSync(worker)) entryPoints.entryWorker = worker; // loaded from beside the bundle, as in dist/
  await build({
    entryPoints,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    outdir: out,
    logLevel: 'error',
    external: NATIVE_HASHERS,
    // The archive has no node_modules: resolve packages from this checkout's.
    nodePaths: [join(ROOT, 'node_modules')],
  });
  rmSync(src, { recursive: true, force: true });
  const path = join(out, kind === 'child' ? 'engine-child.js' : 'cli.js');
  console.log(`baseline: ${ref} (${sha.slice(0, 10)}), its ${kind === 'child' ? 'engine child' : 'CLI'} bundled`);
  return { ref, sha, kind, path };
}

interface Timed {
  ms: number;
  cpu?: number;
  files?: number;
}

function coldCli(cli: string, ws: string): Timed {
  rmSync(join(ws, '.lora-sync'), { recursive: true, force: true });
  const env = { ...process.env, NODE_OPTIONS: '', NODE_PATH: join(ROOT, 'node_modules') };
  return { ms: wall(process.execPath, [cli, 'status', '--root', ws, '--json'], env) };
}

function cold(b: Baseline, which: 'now' | 'before', ws: string): Timed {
  if (b.kind === 'cli') return coldCli(which === 'now' ? join(ROOT, 'dist/cli.js') : b.path, ws);
  const r = which === 'now' ? ours('status-cold', ws) : runChild(b.path, 'status-cold', ws);
  return { ms: r.total_ms, cpu: r.cpu_ms, files: r.files };
}

/** Pairs of cold statuses the guard runs: BENCH_BASELINE_RUNS, else BENCH_RUNS but at least 5. */
const PAIRS = Math.max(1, Number(process.env.BENCH_BASELINE_RUNS ?? Math.max(RUNS, 5)) || 1);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/**
 * Cold status of `ws` now and before, in PAIRS interleaved pairs (the order alternating); adds the row
 * and returns now / before of the best runs. The note adds the median of the pairs' ratios and, for
 * the children, the ratio of their least CPU: on a shared machine those move less than the best wall.
 */
export function baselineGuard(label: string, ws: string, b: Baseline): number {
  const runs: Record<'now' | 'before', Timed[]> = { now: [], before: [] };
  for (let i = 0; i < PAIRS; i++) {
    for (const which of i % 2 ? (['before', 'now'] as const) : (['now', 'before'] as const)) {
      settle();
      runs[which].push(cold(b, which, ws));
    }
  }
  const least = (ts: Timed[], key: 'ms' | 'cpu') => Math.min(...ts.map((t) => t[key] ?? Number.POSITIVE_INFINITY));
  const now = least(runs.now, 'ms');
  const before = least(runs.before, 'ms');
  const files = [runs.now[0].files, runs.before[0].files];
  if (files[0] !== files[1]) console.log(`note: the engines listed ${files[0]} (now) and ${files[1]} (before) files`);
  const ratio = now / before;
  const pairRatio = median(runs.now.map((t, i) => t.ms / runs.before[i].ms));
  const cpu = b.kind === 'child' ? least(runs.now, 'cpu') / least(runs.before, 'cpu') : undefined;
  const how = b.kind === 'child' ? 'in-process, engine child' : 'whole process, CLI';
  rows.push({
    label: `${label}: cold status now vs ${b.ref === DEFAULT_REF ? `before issue 13 (${b.ref})` : b.ref}, same workspace`,
    ours: now,
    peer: before,
    peerName: `before (${b.ref})`,
    note:
      `target <= ${TARGET.toFixed(2)}: ${ratio <= TARGET ? 'met' : 'MISSED'} (${ratio.toFixed(3)}); ${how}, ${PAIRS} interleaved pairs, best of each; ` +
      `median of the pairs' ratios ${pairRatio.toFixed(2)}${cpu === undefined ? '' : `, least CPU now / before ${cpu.toFixed(2)}`}`,
  });
  console.log(
    `[${label}] cold status now / before (${b.ref}): ${ratio.toFixed(2)} (median of pairs ${pairRatio.toFixed(2)}${cpu === undefined ? '' : `, CPU ${cpu.toFixed(2)}`})`,
  );
  return ratio;
}
