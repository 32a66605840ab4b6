/**
 * Per-LoRA write locks under `.lora-sync/locks/`, so two processes (two VS Code windows, or the CLI
 * beside the extension) never write the copies of one LoRA at the same time. A lock is a file
 * created with O_EXCL holding the owner's pid and host; a lock whose process is gone (same host) is
 * taken over. Locks are released when the LoRA's copies are done, and on exit.
 */
import { open, readFile, unlink, mkdir } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { STATE_DIR } from './config';

export interface LockOwner { pid: number; host: string; since: string; lora: string }

export class LockBusy extends Error {
  constructor(readonly owner: LockOwner) {
    super(`another LoRA Sync process (pid ${owner.pid} on ${owner.host}, since ${owner.since}) is syncing this LoRA`);
  }
}

export function lockPath(root: string, loraId: string): string {
  return join(root, STATE_DIR, 'locks', `${createHash('sha1').update(loraId).digest('hex').slice(0, 16)}.lock`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the lock of one LoRA or throws LockBusy. Returns the release function. */
export async function lockLora(root: string, loraId: string): Promise<() => Promise<void>> {
  const path = lockPath(root, loraId);
  await mkdir(join(root, STATE_DIR, 'locks'), { recursive: true });
  const me: LockOwner = { pid: process.pid, host: hostname(), since: new Date().toISOString(), lora: loraId };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await open(path, 'wx');
      try {
        await fh.writeFile(JSON.stringify(me));
      } finally {
        await fh.close();
      }
      return async () => {
        // Only remove the lock if it is still ours (a takeover may have replaced it).
        const now = await readOwner(path);
        if (now && now.pid === me.pid && now.host === me.host && now.since === me.since) await unlink(path).catch(() => undefined);
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const owner = await readOwner(path);
      // Unreadable (being written right now) counts as busy; a dead owner on this host is taken over.
      if (owner && owner.host === me.host && !alive(owner.pid)) {
        await unlink(path).catch(() => undefined);
        continue;
      }
      throw new LockBusy(owner ?? { pid: 0, host: '?', since: '?', lora: loraId });
    }
  }
  throw new LockBusy({ pid: 0, host: '?', since: '?', lora: loraId });
}

async function readOwner(path: string): Promise<LockOwner | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as LockOwner;
  } catch {
    return undefined;
  }
}
