/** Worker thread entry: hashes the byte ranges the pool sends (see leafHashPool.ts). */
import { parentPort } from 'node:worker_threads';
import { hashRangeSync, RangeJob } from './leafHash';

parentPort!.on('message', async (msg: { id: number; job: RangeJob }) => {
  try {
    const r = await hashRangeSync(msg.job);
    parentPort!.postMessage({ id: msg.id, result: r }, [r.leaves.buffer as ArrayBuffer]);
  } catch (e) {
    parentPort!.postMessage({ id: msg.id, error: (e as Error).message });
  }
});
