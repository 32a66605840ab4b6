/**
 * Child process of `npm run bench`: runs one engine operation on a workspace in-process and prints
 * its time and this process's peak RSS (VmHWM) as one JSON line. Bundled and run with plain node.
 *   status-cold ROOT   scan with no cache (the cache is removed first)
 *   status-warm ROOT   scan with the cache a previous scan left
 *   retained ROOT      cold scan, then the heap it keeps after a full collection (run with --expose-gc;
 *                      apart from status-cold, whose peak a collection at start would change)
 *   verify ROOT        cold scan + verify of every LoRA
 *   sync ROOT          cold scan + plan + sync of every STALE / drifted copy
 *   update-one ROOT    warm scan, then a source is rewritten and the time to updated statuses is measured
 *   hashes LIST        the ecosystem hashes `inspect --json` computes (AutoV2, AutoV3, legacy, embedded
 *                      check: engine/fileHashes.ts) of each file LIST names (NUL-separated), one at a time
 */
import '../../server/src/io/gcTuning'; // first: the GC setting, as the CLI and the language server run the engine
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Workspace } from '../../server/src/engine/workspace';
import { trainerStep } from '../../server/src/demo/trainerStep';
import { fileHashes } from '../../server/src/engine/fileHashes';
import { peakRssMB } from '../../server/src/io/peakRss';

async function main() {
  const [op, root] = process.argv.slice(2);
  const out: Record<string, unknown> = { op };
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  if (op === 'hashes') {
    let mismatches = 0;
    const files = readFileSync(root, 'utf8').split('\0').filter(Boolean);
    for (const f of files) mismatches += (await fileHashes(f)).embeddedMismatches.length;
    out.files = files.length;
    out.mismatches = mismatches;
    return report(out, t0, cpu0);
  }
  const gc = (globalThis as { gc?: () => void }).gc;
  if (op === 'retained' && !gc) throw new Error('retained: run the child with --expose-gc');
  gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  if (op === 'status-cold' || op === 'verify' || op === 'sync' || op === 'retained')
    await rm(join(root, '.lora-sync'), { recursive: true, force: true });
  const ws = await Workspace.open(root);
  const s = await ws.scan();
  out.files = s.files;
  out.read = s.read;
  out.scan_ms = performance.now() - t0;
  if (op === 'retained') {
    gc!();
    out.retained_mb = (process.memoryUsage().heapUsed - heapBefore) / 1024 / 1024;
  } else if (op === 'verify') {
    const v = ws.verify();
    out.consistent = v.loras.filter((l) => l.is_consistent).length;
  } else if (op === 'sync') {
    const t = performance.now();
    const r = await ws.sync(ws.plan(), { reason: 'FULL_SYNC' });
    out.sync_ms = performance.now() - t;
    out.synced = r.synced;
    out.failed = r.failed;
  } else if (op === 'update-one') {
    const src = ws.copyMap().loras.values().next().value!.sources[0].path;
    const abs = ws.abs(src);
    await trainerStep(abs); // the trainer's write (not timed)
    const t = performance.now();
    const changes = await ws.update([abs]);
    out.update_ms = performance.now() - t;
    out.changes = changes.length;
  }
  report(out, t0, cpu0);
}

function report(out: Record<string, unknown>, t0: number, cpu0: NodeJS.CpuUsage): void {
  out.total_ms = performance.now() - t0;
  // CPU of the whole process (all threads) since t0: steadier than wall time on a shared machine.
  const cpu = process.cpuUsage(cpu0);
  out.cpu_ms = (cpu.user + cpu.system) / 1000;
  out.max_rss_mb = peakRssMB();
  process.stdout.write(`${JSON.stringify(out)}\n`);
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
