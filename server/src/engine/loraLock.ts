/**
 * Per-LoRA write locks under `.lora-sync/locks/`, so two processes (two VS Code windows, or the CLI
 * beside the extension) never write the copies of one LoRA at the same time. A lock is a file
 * created exclusively, holding the owner's pid and host; a lock whose process is gone (same host) is
 * taken over. Locks are released when the LoRA's copies are done, and on exit.
 *
 * Taking over is the delicate part: two processes that both saw the dead owner would each delete the
 * lock and each create their own, and then both hold it (test/faults saw it in 1 round in 5 to 10).
 * So a dead lock is only ever deleted under a second, short-lived O_EXCL file (`<lock>.takeover`),
 * after reading the owner again there: whoever comes second finds the new, live owner.
 */
import { link, lstat, open, readFile, readdir, unlink, stat, writeFile } from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { STATE_DIR } from './config';
import { ownStartTicks, processAlive } from '../io/processIdentity';
import { ensureRealDir } from '../io/realDir';

/** `start`: the owner's start time in kernel ticks (io/processIdentity), so a reused pid is not taken for it. */
export interface LockOwner {
  pid: number;
  host: string;
  since: string;
  lora: string;
  start?: number;
}

export class LockBusy extends Error {
  constructor(readonly owner: LockOwner) {
    super(`another LoRA Sync process (pid ${owner.pid} on ${owner.host}, since ${owner.since}) is syncing this LoRA`);
  }
}

export function lockPath(root: string, loraId: string): string {
  return join(root, STATE_DIR, 'locks', `${createHash('sha1').update(loraId).digest('hex').slice(0, 16)}.lock`);
}

/** Takes the lock of one LoRA or throws LockBusy. Returns the release function. */
export async function lockLora(root: string, loraId: string): Promise<() => Promise<void>> {
  await ensureRealDir(join(root, STATE_DIR));
  await ensureRealDir(join(root, STATE_DIR, 'locks'));
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
  const start = ownStartTicks();
  const me: LockOwner = {
    pid: process.pid,
    host: hostname(),
    since: new Date().toISOString(),
    lora: what,
    ...(start !== undefined ? { start } : {}),
  };
  const release = async () => {
    // Only remove the lock if it is still ours.
    const now = await readOwner(path);
    if (now && now.pid === me.pid && now.host === me.host && now.since === me.since)
      await unlink(path).catch(() => undefined);
  };
  for (let attempt = 0; attempt < 4; attempt++) {
    if (await create(path, me)) return release;
    const owner = await readOwner(path);
    if (!(await isAbandoned(path, owner))) throw new LockBusy(owner ?? { pid: 0, host: '?', since: '?', lora: what });
    if (await takeOver(path, me)) return release;
    // Not taken over by us: it vanished, someone else took it, or is taking it. Look again.
  }
  throw new LockBusy((await readOwner(path)) ?? { pid: 0, host: '?', since: '?', lora: what });
}

/**
 * Creates the lock file holding `me`; false when it exists. The owner is written to a file of our
 * own first and linked into place (link fails if the name exists, like O_EXCL), so a lock is never
 * seen empty: a process killed between creating and filling it would otherwise block its LoRA for
 * the next 2 s (see isAbandoned). A kill leaves at most that file of our own, removed with the locks.
 */
async function create(path: string, me: LockOwner): Promise<boolean> {
  const mine = `${path}.${me.pid}-${me.start ?? 0}-${randomBytes(4).toString('hex')}.new`;
  await writeFile(mine, JSON.stringify(me));
  try {
    await link(mine, path);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code === 'EPERM' || code === 'ENOTSUP' || code === 'ENOSYS') return createInPlace(path, me); // no hard links here
    throw e;
  } finally {
    await unlink(mine).catch(() => undefined);
  }
}

/** `create` where hard links are not supported: O_EXCL, then the owner (briefly empty). */
async function createInPlace(path: string, me: LockOwner): Promise<boolean> {
  let fh;
  try {
    fh = await open(path, 'wx');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  try {
    await fh.writeFile(JSON.stringify(me));
  } finally {
    await fh.close();
  }
  return true;
}

/**
 * A lock nobody holds: its owner was on this host and is gone, or it cannot be read and is 2 s old
 * (an unreadable lock is being written right now, or its writer was killed between creating and
 * filling it). A lock that is not there at all is not abandoned: it is free, `create` takes it.
 */
async function isAbandoned(path: string, owner: LockOwner | undefined): Promise<boolean> {
  if (owner) return owner.host === hostname() && !processAlive(owner.pid, owner.start);
  const age = await ageMs(path);
  return age !== Infinity && age > 2000;
}

/**
 * Replaces an abandoned lock with ours, under its takeover file (see the header): the owner is read
 * again there, and the dead lock is deleted and ours created before anyone else may look. `me`
 * undefined only deletes it. False when it was not abandoned any more, or someone else is at it.
 */
async function takeOver(path: string, me: LockOwner | undefined): Promise<boolean> {
  const guard = `${path}.takeover`;
  let fh;
  try {
    fh = await open(guard, 'wx');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    // Another process is taking it over (microseconds), or was killed doing it: then the file is old.
    const age = await ageMs(guard);
    if (age !== Infinity && age > 2000) await unlink(guard).catch(() => undefined);
    return false;
  }
  try {
    if (!(await isAbandoned(path, await readOwner(path)))) return false;
    await unlink(path).catch(() => undefined);
    // Someone may create it between the unlink and here (a plain `create` needs no guard): then it is theirs.
    return me ? await create(path, me) : true;
  } finally {
    await fh.close();
    await unlink(guard).catch(() => undefined);
  }
}

/**
 * Deletes the locks of processes that are gone (left by a killed sync), so they do not outlive the
 * next sync when it has nothing to write for their LoRAs. Returns how many were removed.
 */
export async function removeAbandonedLocks(root: string): Promise<number> {
  let removed = 0;
  // LoRA locks, and the history log's lock beside the log.
  for (const dir of [join(root, STATE_DIR, 'locks'), join(root, STATE_DIR)]) {
    // Only real folders: a link would lead to files that are not ours to delete (lockLora refuses it).
    if (
      !(await lstat(dir).then(
        (st) => st.isDirectory(),
        () => false,
      ))
    )
      continue;
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const half = /\.(\d+)-(?:(\d+)-)?[0-9a-f]+\.new$/.exec(name); // a lock a killed process was creating
      if (half && !processAlive(Number(half[1]), half[2] ? Number(half[2]) : undefined))
        await unlink(join(dir, name)).catch(() => undefined);
      if (!name.endsWith('.lock')) continue;
      const path = join(dir, name);
      if ((await isAbandoned(path, await readOwner(path))) && (await takeOver(path, undefined))) removed++;
    }
  }
  return removed;
}

async function ageMs(path: string): Promise<number> {
  try {
    return Date.now() - (await stat(path)).mtimeMs;
  } catch {
    return Infinity; // gone
  }
}

async function readOwner(path: string): Promise<LockOwner | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as LockOwner;
  } catch {
    return undefined;
  }
}
