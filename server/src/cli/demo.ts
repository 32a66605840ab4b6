/**
 * `lora-sync demo`: generates a seed-like workspace with the project's own writer and runs the
 * tool over it. Until the copy engine lands this is: inspect every checkpoint and summarise.
 */
import { rm } from 'node:fs/promises';
import { relative, resolve } from 'node:path';
import fg from 'fast-glob';
import { generateSeedWorkspace } from '../demo/seedWorkspace';
import { inspectFile, formatInspect, InspectReport } from './inspect';
import { mapLimit } from '../io/mapLimit';

export async function runDemo(opts: { dir?: string }): Promise<number> {
  const root = resolve(opts.dir ?? 'demo-workspace');
  await rm(root, { recursive: true, force: true });
  const t0 = performance.now();
  const ws = await generateSeedWorkspace(root);
  const t1 = performance.now();
  console.log(`generated ${ws.root}: ${ws.loras} LoRAs, ${ws.copies} copies, ${(ws.bytes / 1e6).toFixed(1)} MB in ${((t1 - t0) / 1000).toFixed(1)} s`);
  const paths = await fg('**/*.{pt,safetensors}', { cwd: root, absolute: true, dot: false });
  const reports: InspectReport[] = await mapLimit(paths.sort(), 8, (p) => inspectFile(p, relative(root, p)));
  const t2 = performance.now();
  const corrupt = reports.filter((r) => r.error || (r.crc && !r.crc.ok));
  const unsafe = reports.filter((r) => r.safety && !r.safety.safe);
  const tensors = reports.reduce((n, r) => n + (r.tensors?.length ?? 0), 0);
  console.log(`inspected ${reports.length} files (${tensors} tensors) in ${((t2 - t1) / 1000).toFixed(2)} s`);
  console.log(`  sound:   ${reports.filter((r) => r.sound).length}`);
  console.log(`  corrupt: ${corrupt.length}${corrupt.length ? '  (' + corrupt.map((r) => `${r.file}: ${r.error?.code ?? 'CRC_MISMATCH'}`).join('; ') + ')' : ''}`);
  console.log(`  unsafe:  ${unsafe.length}${unsafe.length ? '  (' + unsafe.map((r) => `${r.file}: ${r.safety!.unsafe.map((u) => u.global).join(', ')}`).join('; ') + ')' : ''}`);
  const source = reports.find((r) => r.file.startsWith('⭐') && r.sound);
  if (source) console.log('\nOne source, as `lora-sync inspect` shows it:\n' + formatInspect(source));
  return 0;
}
