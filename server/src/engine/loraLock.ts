/**
 * Per-LoRA write locks under `.lora-sync/locks/`, so two processes (two VS Code windows, or the CLI
 * beside the extension) never write the copies of one LoRA at the same time. A lock is a file
 * created with O_EXCL holding the owner's pid and host; a lock whose process is gone (same host) is
 * taken over. Locks are released when the LoRA's copies are done, and on exit.
 */
import { open, readFile, unlink, mkdir, stat } from 'node:fs/promises';
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

/** Whether a process with this pid exists on this machine (EPERM: it does, owned by someone else). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the lock of one LoRA or throws LockBusy. Returns the release function. */
export async function lockLora(root: string, loraId: string): Promise<() => Promise<void>> {
  await mkdir(join(root, STATE_DIR, 'locks'), { recursive: true });
  return takeLock(lockPath(root, loraId), loraId);
}

/**
 * Runs `fn` holding the lock file `path`, waiting up to `waitMs` for another process to let go.
 * For short critical sections shared by processes (the history log's repair-then-append).
 */
export async function withLockFile<T>(path: string, fn: () => Promise<T>, waitMs = 5000): Promise<T> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      const release = await takeLock(path, 'history');
      try {
        return await fn();
      } finally {
        await release();
      }
    } catch (e) {
      if (!(e instanceof LockBusy) || Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 15));
    }
  }
}

async function takeLock(path: string, what: string): Promise<() => Promise<void>> {
  const me: LockOwner = { pid: process.pid, host: hostname(), since: new Date().toISOString(), lora: what };
  const loraId = what;
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
      // A dead owner on this host is taken over. An unreadable lock is being written right now —
      // or its writer was killed between creating and filling it: once it is 2 s old, that.
      if ((owner && owner.host === me.host && !processAlive(owner.pid)) || (!owner && (await ageMs(path)) > 2000)) {
        await unlink(path).catch(() => undefined);
        continue;
      }
      throw new LockBusy(owner ?? { pid: 0, host: '?', since: '?', lora: loraId });
    }
  }
  throw new LockBusy({ pid: 0, host: '?', since: '?', lora: loraId });
}

async function ageMs(path: string): Promise<number> {
  try {
    return Date.now() - (await stat(path)).mtimeMs;
  } catch {
    return Infinity; // gone already: free to take
  }
}

async function readOwner(path: string): Promise<LockOwner | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as LockOwner;
  } catch {
    return undefined;
  }
}
