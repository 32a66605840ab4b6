/**
 * Child of gcTuning.test.ts: one cold scan of the workspace ROOT in this process, with the GC
 * setting of the CLI and the server (`tuned`) or V8's defaults (the control). Run with
 * `--trace-pretenuring-statistics`, V8 then says on stdout what it decided for each allocation site.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';

async function main(): Promise<void> {
  const [root, mode] = process.argv.slice(2);
  // Loaded first, as the entry points load it; then the engine.
  if (mode === 'tuned') await import('../../server/src/io/gcTuning');
  const { Workspace } = await import('../../server/src/engine/workspace');
  rmSync(join(root, '.lora-sync'), { recursive: true, force: true });
  const ws = await Workspace.open(root);
  const s = await ws.scan({ workers: false });
  process.stderr.write(`scanned ${s.files} files\n`);
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
