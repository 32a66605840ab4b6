/**
 * Crash-safe replacement of a file: write a temporary file beside the target (same folder, so the
 * rename cannot cross file systems), flush it, rename it over the target, flush the folder.
 * A reader sees the old file or the new one, never a mix; a crash leaves at most a temporary file,
 * which `isTempFile` recognises so a later run can remove it.
 */
import { open, rename, unlink, stat, type FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { faultPoint } from './faults';
import { ownStartTicks } from './processIdentity';

export const TEMP_MARK = '.lora-sync-tmp-';

/** Bytes a file name may take (NAME_MAX on Linux and macOS; 255 UTF-16 units on Windows, which fit too). */
const NAME_MAX_BYTES = 255;

/**
 * `.<name>.lora-sync-tmp-<pid>-<start ticks>-<random>`: who made it, so a sweep can tell whether it
 * is still being written. A target name too long for the ~40 bytes added (a 200-byte name, or 100
 * characters of emoji or Turkish) is cut to fit, at a character: the name only has to be unique and
 * recognisable, and the rename gives the file its real name.
 */
export function tempPathFor(target: string): string {
  const suffix = `${TEMP_MARK}${process.pid}-${ownStartTicks() ?? 0}-${randomBytes(4).toString('hex')}`;
  let name = basename(target);
  const room = NAME_MAX_BYTES - 1 - Buffer.byteLength(suffix);
  if (Buffer.byteLength(name) > room) {
    let cut = '';
    let bytes = 0;
    for (const ch of name) {
      bytes += Buffer.byteLength(ch);
      if (bytes > room) break;
      cut += ch;
    }
    name = cut;
  }
  return join(dirname(target), `.${name}${suffix}`);
}

/** The maker of a temporary file, from its name (older names have no start ticks). */
export function tempFileOwner(name: string): { pid: number; start?: number } | undefined {
  const m = /lora-sync-tmp-(\d+)-(?:(\d+)-)?[0-9a-f]+$/.exec(name);
  // Start ticks 0: written where they are unknown (no /proc), so only the pid can be checked.
  return m ? { pid: Number(m[1]), ...(m[2] && m[2] !== '0' ? { start: Number(m[2]) } : {}) } : undefined;
}

/**
 * This process's temporary files still being written, by name. A name of ours not in here is a
 * leftover: its rename and its unlink both failed because its folder was renamed meanwhile (soak
 * suite), and only its own process could tell, since the pid in the name is alive.
 */
const inFlight = new Set<string>();

export function isOwnTempInFlight(name: string): boolean {
  return inFlight.has(name);
}

export function isTempFile(name: string): boolean {
  return name.startsWith('.') && name.includes(TEMP_MARK);
}

export interface AtomicWriteOptions {
  /** Skip fsync (tests and benchmarks of the pure write path only). */
  noSync?: boolean;
  /** Called after the temporary file is complete and flushed, before the rename: a last check. Throw to abort. */
  beforeRename?: (tempPath: string) => Promise<void>;
  /**
   * The folder's fsync after the rename is left to the caller, who is handed the folder and must
   * fsync it (fsyncDir) before it reports the file written: a sync of many copies then flushes each
   * folder once rather than once per copy.
   */
  deferDirSync?: (dir: string) => void;
}

export async function fsyncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch {
    // Some file systems refuse fsync on a directory; the rename is still atomic there.
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

export async function atomicWrite<T>(
  target: string,
  write: (fh: FileHandle) => Promise<T>,
  opts: AtomicWriteOptions = {},
): Promise<T> {
  const tmp = tempPathFor(target);
  let old: { mode: number; uid: number; gid: number } | undefined;
  try {
    old = await stat(target);
  } catch {
    // a new file: default mode, owned by whoever writes it
  }
  faultPoint('write:create', target);
  inFlight.add(basename(tmp));
  let fh: FileHandle;
  try {
    fh = await open(tmp, 'wx', 0o600);
  } catch (e) {
    inFlight.delete(basename(tmp));
    throw e;
  }
  let done = false;
  try {
    faultPoint('write:open', target);
    // The replacement keeps the old file's mode (exactly: chmod is not subject to the umask) and,
    // where we may (root, or the same owner), its owner and group: a sync run with sudo must not
    // hand a user's copy to root.
    await fh.chmod(old ? old.mode & 0o7777 : 0o666 & ~process.umask());
    if (old) {
      await fh.chown(old.uid, old.gid).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'EPERM') throw e;
      });
    }
    const result = await write(fh);
    faultPoint('write:data', target);
    if (!opts.noSync) await fh.sync();
    await fh.close();
    done = true;
    faultPoint('write:synced', target);
    if (opts.beforeRename) await opts.beforeRename(tmp);
    await rename(tmp, target);
    faultPoint('write:renamed', target);
    if (!opts.noSync) {
      if (opts.deferDirSync) opts.deferDirSync(dirname(target));
      else await fsyncDir(dirname(target));
    }
    faultPoint('write:done', target);
    return result;
  } catch (e) {
    if (!done) await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw e;
  } finally {
    inFlight.delete(basename(tmp));
  }
}
