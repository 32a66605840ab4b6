/**
 * `npm run bench:loop [ROOT]`: how long a scan holds the event loop at once, cold and warm, in
 * process (the language server runs its scans beside its requests). A timer every 2 ms notes each
 * gap; prints each phase's wall time, the longest gaps and the loop-delay percentiles. Figures, not
 * assertions (test/unit/scanTurns.test.ts asserts the turns by counting files between them). ROOT
 * defaults to the bench's 10x workspace, generated into BENCH_DIR (default os.tmpdir()).
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { existsSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Workspace } from '../../server/src/engine/workspace';
import { generateSeedWorkspace } from '../../server/src/demo/seedWorkspace';

async function scanOnce(root: string, label: string): Promise<void> {
  const ws = await Workspace.open(root);
  const delay = monitorEventLoopDelay({ resolution: 5 });
  const gaps: number[] = [];
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    gaps.push(now - last);
    last = now;
  }, 2);
  delay.enable();
  const s = await ws.scan({ workers: false });
  delay.disable();
  clearInterval(timer);
  gaps.push(performance.now() - last);
  const ms = (x: number) => x.toFixed(0);
  const phases = Object.entries(s.timings)
    .map(([k, v]) => `${k} ${ms(v)}`)
    .join(', ');
  const top = [...gaps]
    .sort((a, b) => b - a)
    .slice(0, 3)
    .map(ms)
    .join(', ');
  console.log(
    `${label}: ${s.files} files, ${s.read} read (${phases} ms); longest holds of the loop ${top} ms; ` +
      `loop delay p50 ${ms(delay.percentile(50) / 1e6)}, p99 ${ms(delay.percentile(99) / 1e6)}, max ${ms(delay.max / 1e6)} ms`,
  );
}

async function main(): Promise<void> {
  let root = process.argv[2];
  if (!root) {
    root = join(process.env.BENCH_DIR ?? tmpdir(), 'lora-loop-10x');
    if (!existsSync(root)) await generateSeedWorkspace(root, { loras: 1_200, copies: 4_870 });
  }
  await rm(join(root, '.lora-sync'), { recursive: true, force: true });
  await scanOnce(root, 'cold');
  await scanOnce(root, 'warm');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
