/**
 * The bursts of the soak suite, each what a user does next to a running index: a checkout (2,000+
 * files replaced within a second by renames from a prepared tree, changed sources among them), a
 * team folder deleted and restored, a folder renamed, 500 new copies appearing.
 */
import { cp, copyFile, mkdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { isTempFile } from '../../server/src/io/atomicWrite';
import { trainerStep } from '../../server/src/demo/trainerStep';

/**
 * Prepares the checkout (the sources' next version, the copies' same bytes on new inodes) in a dot
 * folder nobody watches, then renames every file over its target; returns how long the flood took.
 */
export async function checkout(
  root: string,
  files: string[],
  sources: Set<string>,
  match: number,
  tag: string,
): Promise<number> {
  const prep = join(root, `.soak-checkout-${tag}`);
  for (const rel of files) {
    const to = join(prep, rel);
    await mkdir(dirname(to), { recursive: true });
    await copyFile(join(root, rel), to);
    // A trainer moves its match on with every version (a copy whose source moved on is then STALE, not DIVERGED).
    if (sources.has(rel)) await trainerStep(to, { match });
  }
  const t0 = Date.now();
  for (const rel of files) await rename(join(prep, rel), join(root, rel));
  const ms = Date.now() - t0;
  await rm(prep, { recursive: true, force: true });
  return ms;
}

/** Deletes a team folder (kept aside in a dot folder) and returns the function that restores it. */
export async function deleteTeam(root: string, team: string): Promise<() => Promise<void>> {
  const hold = join(root, `.soak-hold-${team}`);
  // A sync's temporary files come and go while the folder is copied (one vanished between the listing
  // and its lstat: ENOENT): they are nobody's data, so the copy leaves them out.
  await cp(join(root, team), hold, { recursive: true, filter: (src) => !isTempFile(basename(src)) });
  await rm(join(root, team), { recursive: true, force: true, maxRetries: 20 });
  return async () => {
    await cp(hold, join(root, team), { recursive: true });
    await rm(hold, { recursive: true, force: true });
  };
}

/** New copies of existing ones (their own names), in one new hall. */
export async function newCopies(root: string, from: string[], hall: string, n: number): Promise<string[]> {
  await mkdir(join(root, hall), { recursive: true });
  const out: string[] = [];
  for (let k = 0; k < n; k++) {
    const src = from[k % from.length]!;
    const base = src.split('/').pop()!.replace(/\.pt$/, '');
    const rel = `${hall}/${base}_n${k}.pt`;
    await copyFile(join(root, src), join(root, rel));
    out.push(rel);
  }
  return out;
}

export { rename };
