/**
 * The sweep of temporary files that killed writes left behind (a scan's listing notes them, see
 * scanner.ts; a sync sweeps them before it writes).
 */
import { readdir, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import fg from 'fast-glob';
import { STATE_DIR } from './config';
import { relPath, TEMP_GLOB } from './scanner';
import { ownStartTicks, processAlive } from '../io/processIdentity';
import { isOwnTempInFlight, isTempFile, tempFileOwner } from '../io/atomicWrite';

/**
 * Temporary files left by a write that was killed: `.<name>.lora-sync-tmp-<pid>-<rand>`. Removed
 * when the process that made them is gone (a live one may still be writing). Looked for in the
 * folders of `targets` (the copies a sync is about to write), in what the last listing saw (`seen`,
 * absolute paths), and in the state folder; with no targets, in the whole workspace.
 */
export async function removeStaleTempFiles(
  root: string,
  exclude: readonly string[],
  targets: readonly string[] | undefined,
  seen: () => Iterable<string>,
  abs: (rel: string) => string,
): Promise<string[]> {
  let temps: string[];
  if (!targets) {
    temps = await fg(TEMP_GLOB, {
      cwd: root,
      ignore: [...exclude],
      dot: false,
      absolute: true,
      onlyFiles: true,
      followSymbolicLinks: false,
      suppressErrors: true,
    });
  } else {
    const found = new Set(seen());
    for (const dir of new Set(targets.map((r) => dirname(abs(r))))) {
      for (const name of await readdir(dir).catch(() => [] as string[]))
        if (isTempFile(name)) found.add(join(dir, name));
    }
    temps = [...found];
  }
  // The engine's own state folder is excluded from scans, but its cache is written the same way.
  const state = join(root, STATE_DIR);
  for (const name of await readdir(state).catch(() => [] as string[]))
    if (isTempFile(name)) temps.push(join(state, name));
  const removed: string[] = [];
  for (const t of temps) {
    const name = basename(t);
    if (!isTempFile(name)) continue;
    const owner = tempFileOwner(name);
    const ours = owner && owner.pid === process.pid && (owner.start === undefined || owner.start === ownStartTicks());
    if (ours && isOwnTempInFlight(name)) continue; // ours, being written
    if (owner && owner.pid !== process.pid && processAlive(owner.pid, owner.start)) continue;
    // Reported only when it was there and is gone (the listing that saw it may be old).
    if (
      await unlink(t).then(
        () => true,
        () => false,
      )
    )
      removed.push(relPath(root, t));
  }
  return removed;
}
