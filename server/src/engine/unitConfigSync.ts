/**
 * A folder unit's (PEFT, diffusers) config in a sync: `adapter_config.json` is the unit's general
 * metadata (unitFiles.ts), so the executor checks that the copy's and the source's are what the plan
 * read, brings the copy's to the source's byte for byte after the weights, and keeps it with a
 * forced overwrite's backup.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { atomicWrite } from '../io/atomicWrite';
import type { FileEntry } from './loraFile';
import { ChangedSincePlan, ReadBackMismatch } from './syncErrors';
import { configDigestOf, UNIT_CONFIG, unitConfigAt } from './unitFiles';

/** The copy's and the source's configs are still what the plan read (absent: no key). */
export async function configGuard(rel: string, abs: string, srcAbs: string, planned: FileEntry, srcEntry: FileEntry) {
  const [mine, theirs] = await Promise.all([unitConfigAt(abs), unitConfigAt(srcAbs)]);
  if (theirs?.digest !== srcEntry.configDigest)
    throw new ChangedSincePlan(`the source's ${UNIT_CONFIG} changed during the sync: ${rel} was not overwritten`);
  // Already the source's (a sync that stopped between its two writes): nothing of the copy's is lost.
  if (mine?.digest !== planned.configDigest && mine?.digest !== theirs?.digest)
    throw new ChangedSincePlan(`the ${UNIT_CONFIG} beside ${rel} changed since the plan: it was not overwritten`);
}

/**
 * Brings a folder unit's config to the source's, byte for byte, after its weights: a crash between
 * the two leaves weights equal to the source's and a config that differs, which the next status shows
 * as METADATA_DRIFT and the next sync finishes. True when it wrote.
 */
export async function writeUnitConfig(
  rel: string,
  abs: string,
  srcAbs: string,
  planned: FileEntry,
  srcEntry: FileEntry,
  dirs: Set<string>,
): Promise<boolean> {
  const theirs = await unitConfigAt(srcAbs);
  // A source without a config: the copy's (if any) is left as it is.
  if (!theirs) return false;
  if (theirs.digest !== srcEntry.configDigest)
    throw new ChangedSincePlan(`the source's ${UNIT_CONFIG} changed during the sync`);
  if ((await unitConfigAt(abs))?.digest === theirs.digest) return false;
  const target = join(dirname(abs), UNIT_CONFIG);
  await atomicWrite(target, (fh) => fh.writeFile(theirs.bytes), {
    beforeRename: async (temp) => {
      const mine = await unitConfigAt(abs);
      if (mine?.digest !== planned.configDigest)
        throw new ChangedSincePlan(`the ${UNIT_CONFIG} beside ${rel} changed since the plan: it was not overwritten`);
      if ((await unitConfigAt(srcAbs))?.digest !== theirs.digest)
        throw new ChangedSincePlan(`the source's ${UNIT_CONFIG} changed during the sync`);
      // Read back: the new file holds the source's bytes.
      if (configDigestOf(await readFile(temp)) !== theirs.digest)
        throw new ReadBackMismatch(`the new ${UNIT_CONFIG}, read back, is not the source's: it was not installed`);
    },
    deferDirSync: (d) => dirs.add(d),
  });
  return true;
}

/** A forced overwrite's backup of a folder unit keeps the unit's config beside the backed-up weights (in `dir`). */
export async function backupUnitConfig(abs: string, dir: string): Promise<void> {
  const config = await unitConfigAt(abs);
  if (config) await writeFile(join(dir, UNIT_CONFIG), config.bytes);
}
