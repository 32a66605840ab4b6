/** Worker thread entry: reads the files it is sent into entries (see entryPool.ts). */
import { parentPort } from 'node:worker_threads';
import { readEntry } from './loraFile';
import { EngineConfig } from './config';

interface Job { id: number; cfg: EngineConfig; files: Array<{ abs: string; rel: string }> }

parentPort!.on('message', async (job: Job) => {
  const entries = [];
  for (const f of job.files) {
    try {
      entries.push({ ok: true, entry: await readEntry(f.abs, f.rel, job.cfg) });
    } catch (e) {
      entries.push({ ok: false, code: (e as NodeJS.ErrnoException).code ?? 'IO_ERROR', message: (e as Error).message });
    }
  }
  parentPort!.postMessage({ id: job.id, entries });
});
