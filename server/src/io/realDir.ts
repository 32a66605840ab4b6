/**
 * The engine's own state (`.lora-sync/`: cache, history, locks, backups) is written only into real
 * folders. A state folder that is a symbolic link (committed to a repository, or planted) would carry
 * those writes wherever it points, outside the workspace: it is refused with a typed error, and the
 * files in it are opened with O_NOFOLLOW for the same reason.
 */
import { constants } from 'node:fs';
import { lstat, mkdir, readlink } from 'node:fs/promises';

export class StateLinkError extends Error {
  override readonly name = 'StateLinkError';
  readonly code = 'STATE_DIR_LINK';
}

/** The error for a state folder that is a file (a write finds it here, a read by ENOTDIR). */
export function notAFolder(dir: string): StateLinkError {
  return new StateLinkError(`${dir} is not a folder: LoRA Sync cannot keep its state there`);
}

/**
 * Makes `dir` (and missing parents) and checks it is a folder, not a link to one. Returns the first
 * folder it made (as `mkdir -p` does), or undefined when it existed.
 */
export async function ensureRealDir(dir: string): Promise<string | undefined> {
  let st;
  try {
    st = await lstat(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    return mkdir(dir, { recursive: true });
  }
  if (st.isSymbolicLink()) {
    const to = await readlink(dir).catch(() => '?');
    throw new StateLinkError(
      `${dir} is a symbolic link (to ${to}): LoRA Sync writes its state only into a real folder inside the workspace; replace the link with a folder`,
    );
  }
  if (!st.isDirectory()) throw notAFolder(dir);
  return undefined;
}

/** Open flags that refuse a symbolic link as the file itself (0 where the platform has no O_NOFOLLOW). */
export const NO_FOLLOW = constants.O_NOFOLLOW ?? 0;
export const APPEND_NO_FOLLOW = constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND | NO_FOLLOW;
export const READ_WRITE_NO_FOLLOW = constants.O_RDWR | NO_FOLLOW;
