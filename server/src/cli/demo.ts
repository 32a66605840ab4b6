/**
 * `lora-sync demo`: the main job on a generated seed-like workspace (120 LoRAs, 487 copies under
 * emoji hall and team folders, some stale, diverged, drifted, corrupt, unsafe and orphaned), written
 * with the project's own writer: status, then a full sync, then verify, with a summary like the seed's.
 */
import { rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import { generateSeedWorkspace } from '../demo/seedWorkspace';
import { Workspace } from '../engine/workspace';
import { formatPlan, formatStatus } from './engineCommands';

const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

export async function runDemo(opts: { dir?: string }): Promise<number> {
  const root = resolve(opts.dir ?? 'demo-workspace');
  await rm(root, { recursive: true, force: true });
  let t = performance.now();
  const gen = await generateSeedWorkspace(root);
  console.log(
    `1. generated ${root}\n   ${gen.loras} LoRAs, ${gen.copies} copies, ${(gen.bytes / 1e6).toFixed(1)} MB in ${secs(performance.now() - t)}\n`,
  );

  t = performance.now();
  const ws = await Workspace.open(root);
  await ws.scan();
  const before = await ws.report();
  console.log(`2. status (${secs(performance.now() - t)})`);
  console.log(formatStatus(before, false).split('\n').slice(0, 2).join('\n'));
  const shown = before.files.filter((f) => f.status !== 'SOURCE' && f.status !== 'IN_SYNC');
  for (const f of shown.slice(0, 12)) console.log(`   ${f.status.padEnd(16)} ${f.path}\n     ${f.message}`);
  if (shown.length > 12) console.log(`   ... and ${shown.length - 12} more (lora-sync status --root ${root})`);

  const plan = ws.plan();
  console.log(`\n3. ${formatPlan(plan).split('\n')[0]}`);
  t = performance.now();
  const res = await ws.sync(plan, { reason: 'FULL_SYNC', match: 50 });
  const loras = res.loras.filter((l) => l.copies.some((c) => c.outcome === 'synced')).length;
  console.log(
    `   full sync (${secs(performance.now() - t)}): LoRAs synced ${loras}, files updated ${res.synced}, errors ${res.failed}, left alone ${res.refused} (refused) + ${res.skipped} (in sync or skipped)`,
  );
  for (const l of res.loras)
    for (const c of l.copies)
      if (c.outcome === 'refused' && c.reason !== 'already in sync') console.log(`     refused ${c.path}: ${c.reason}`);

  t = performance.now();
  const v = ws.verify();
  await ws.recordVerify(v);
  const after = await ws.report();
  console.log(
    `\n4. verify (${secs(performance.now() - t)}): ${v.loras.filter((l) => l.is_consistent).length} of ${v.loras.length} LoRAs consistent; what remains needs a person:`,
  );
  const left = Object.entries(after.stats.by_status)
    .filter(([k, n]) => n && k !== 'SOURCE' && k !== 'IN_SYNC')
    .map(([k, n]) => `${k} ${n}`);
  console.log(`   ${left.join(' · ') || 'nothing'}`);

  const s = after.stats;
  console.log(
    `\n5. stats: ${JSON.stringify({ total_loras_tracked: s.total_loras_tracked, total_copies_tracked: s.total_copies_tracked, total_syncs_performed: s.total_syncs_performed, average_copies_per_lora: s.average_copies_per_lora })}`,
  );
  console.log(`   history: ${ws.history.path}`);
  console.log(
    `\nTry: node dist/cli.js status --root ${root}   |   node dist/cli.js sync --all --force --dry-run --root ${root}`,
  );
  return 0;
}
