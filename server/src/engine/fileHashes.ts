/**
 * The ecosystem's hashes of one file as `inspect --json` and the inspector show them: AutoV2 (whole
 * file), AutoV3 (safetensors data section), A1111's legacy hash, and embedded hashes that disagree.
 * One pass over the file, so only computed when asked for (never in a scan).
 */
import { stat } from 'node:fs/promises';
import { embeddedHashReport } from '../layouts/ecosystemHashes';
import type { InspectHashes } from '../protocol/inspect';

export async function fileHashes(path: string): Promise<InspectHashes> {
  const { hashes: h, issues } = await embeddedHashReport(path);
  return {
    sha256: h.sha256,
    autoV2: h.autoV2,
    ...(h.safetensors ? { autoV3: h.safetensors.autoV3, dataSha256: h.safetensors.dataSha256 } : {}),
    legacy: h.legacy,
    legacyWindowBytes: h.legacyWindowBytes,
    embeddedMismatches: issues.map((i) => ({ key: i.key, embedded: i.embedded, actual: i.actual, detail: i.detail })),
  };
}

/** Files whose hashes are kept (a few hundred bytes each): hovering the tree again costs nothing. */
const KEPT = 2000;
const kept = new Map<string, { key: string; hashes: InspectHashes }>();

/**
 * fileHashes, remembered by (size, mtime ns, inode): the server computes a file's hashes once per
 * version of it. A file that changes while it is read is not remembered (its key moved).
 */
export async function cachedFileHashes(path: string): Promise<InspectHashes> {
  const keyOf = async () => {
    const st = await stat(path, { bigint: true });
    return `${st.size}:${st.mtimeNs}:${st.ino}`;
  };
  const key = await keyOf();
  const hit = kept.get(path);
  if (hit?.key === key) return hit.hashes;
  const hashes = await fileHashes(path);
  if ((await keyOf()) !== key) return hashes;
  kept.delete(path);
  kept.set(path, { key, hashes });
  if (kept.size > KEPT) kept.delete(kept.keys().next().value as string);
  return hashes;
}
