/**
 * What the bench's modules share: the table's rows, best-of-N, wall-clock timing of a command, the
 * `cat` / `sha256sum` floor, and the engine child (bundled by engine.ts, run with plain node).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';

export const ROOT = join(__dirname, '..', '..');
export const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 1) || 1);

export interface Row {
  label: string;
  ours: number;
  peer: number;
  peerName: string;
  note?: string;
}
export const rows: Row[] = [];
export const extras: string[] = [];

/** The best (lowest `score`) of RUNS runs. */
export function best<T>(run: () => T, score: (t: T) => number): T {
  let b = run();
  for (let i = 1; i < RUNS; i++) {
    const t = run();
    if (score(t) < score(b)) b = t;
  }
  return b;
}

export function wall(cmd: string, args: string[], env?: NodeJS.ProcessEnv): number {
  const t = performance.now();
  const r = spawnSync(cmd, args, {
    stdio: ['ignore', 'ignore', 'ignore'],
    env: env ?? process.env,
    maxBuffer: 1 << 28,
  });
  if (r.status !== 0 && r.status !== 1) throw new Error(`${cmd} ${args.slice(0, 2).join(' ')} failed with ${r.status}`);
  return performance.now() - t;
}

/** `cat` / `sha256sum` over many files via xargs (ARG_MAX), timed as one shell command. */
export function floor(tool: 'cat' | 'sha256sum', listFile: string): number {
  return wall('sh', ['-c', `xargs -0 ${tool} < "$1" > /dev/null`, 'floor', listFile]);
}

/** The engine child bundles (engine.ts sets them): the current tree's, and the baseline's if any. */
/** The two I/O-floor rows of a set: our cold status against `cat` and `sha256sum` of the same bytes. */
export function floorRows(label: string, coldMs: number, cat: number, sha: number): void {
  rows.push({ label: `${label}: cold status vs cat of the same bytes`, ours: coldMs, peer: cat, peerName: 'cat' });
  rows.push({
    label: `${label}: cold status vs sha256sum of the same bytes`,
    ours: coldMs,
    peer: sha,
    peerName: 'sha256sum',
  });
}

export const children = { now: '' };

/** One operation of an engine child bundle (`engine-child.ts`), its JSON line parsed. */
export function runChild(child: string, op: string, arg: string): Record<string, number> {
  // NODE_PATH: the bundle lives outside the repo, and loads the native hashers from its node_modules.
  // Only `retained` gets --expose-gc: a collection changes the peak the other operations report.
  const flags = op === 'retained' ? ['--expose-gc'] : [];
  const out = execFileSync(process.execPath, [...flags, child, op, arg], {
    encoding: 'utf8',
    maxBuffer: 1 << 26,
    env: { ...process.env, NODE_OPTIONS: '', NODE_PATH: join(ROOT, 'node_modules') },
  });
  return JSON.parse(out);
}

/** One operation of the current engine's child. */
export function ours(op: string, root: string): Record<string, number> {
  return runChild(children.now, op, root);
}

/** Lets dirty pages of an earlier step be written before a timed step. */
export function settle(): void {
  spawnSync('sync');
}

/**
 * The phases of a `--timings` line (cli/timings.ts), in its order, then the total and the process's
 * peak RSS in MB (`peak`).
 */
export function timingsOf(line: string): Array<[string, number]> {
  const body = /^timings \(wall ms\): (.*)$/m.exec(line)?.[1];
  if (!body) throw new Error(`no --timings line in: ${line.slice(0, 200)}`);
  const num = (x: string) => Number(x.replace(/,/g, ''));
  const [parts, rest] = body.split('; total ');
  const [total, peak] = rest.split('; peak RSS ');
  const out = parts.split(/, (?=[a-z])/).map((p): [string, number] => {
    const m = /^(.*?) ([\d,]+)( \(.*\))?$/.exec(p)!;
    return [m[1], num(m[2])];
  });
  return [...out, ['total', num(total)], ['peak', num(peak.replace(/ MB$/, ''))]];
}
