/**
 * The ecosystem's hashes of one file as `inspect --json` and the inspector show them: AutoV2 (whole
 * file), AutoV3 (safetensors data section), A1111's legacy hash, and embedded hashes that disagree.
 * One pass over the file, so only computed when asked for (never in a scan).
 */
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
