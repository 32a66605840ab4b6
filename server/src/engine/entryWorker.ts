/** Worker thread entry: reads the files it is sent into entries (see entryPool.ts). */
import { parentPort } from 'node:worker_threads';
import { readEntry } from './loraFile';
import type { EngineConfig } from './config';
import type { FileToRead } from './entryPool';

interface Job {
  id: number;
  cfg: EngineConfig;
  files: FileToRead[];
}

parentPort!.on('message', async (job: Job) => {
  const entries = [];
  for (const f of job.files) {
    try {
      entries.push({ ok: true, entry: await readEntry(f.abs, f.rel, job.cfg, f.key) });
    } catch (e) {
      entries.push({ ok: false, code: (e as NodeJS.ErrnoException).code ?? 'IO_ERROR', message: (e as Error).message });
    }
  }
  parentPort!.postMessage({ id: job.id, entries });
});
