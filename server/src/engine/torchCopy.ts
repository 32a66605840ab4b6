/**
 * What a torch (.pt) copy is made of: the source's object with a merged `metadata` mapping (the
 * source's general keys, the copy's own keys as they were, a new `sync_info`), written with the
 * source's storages; or, for a plain state dict that has no metadata to join, the source's object
 * as it is. The safetensors counterpart is safetensorsCopy.ts.
 */
import type { Checkpoint } from '../formats/checkpoint';
import { DIGEST_ALG } from '../formats/fingerprint';
import * as N from '../formats/pickle/nodes';
import { type PyNode, getKey, mappingEntries } from '../formats/pickle/nodes';
import { writeTorchCheckpoint, storageSourcesOf, torchPrefixFor } from '../formats/torch/ptWriter';
import { atomicWrite, type AtomicWriteOptions } from '../io/atomicWrite';
import type { EngineConfig } from './config';
import type { FileEntry } from './loraFile';
import { stateDictOfSafetensors } from './stateDictOfSafetensors';

function setEntry(entries: Array<[PyNode, PyNode]>, key: string, value: PyNode): void {
  const i = entries.findIndex(([k]) => k.kind === 'str' && k.value === key);
  if (i >= 0) entries[i] = [entries[i][0], value];
  else entries.push([N.str(key), value]);
}

/** Our sync record in a torch copy's metadata: the source's own `sync_info`, with ours on top. */
export function syncInfoNode(
  src: Checkpoint,
  srcEntry: FileEntry,
  opts: { match?: number; reason: string },
  when: Date,
): PyNode {
  const srcInfo = src.root ? getKey(getKey(src.root, 'metadata') ?? N.none(), 'sync_info') : undefined;
  // Start from the source's own sync_info (the trainer may keep more there), then ours on top.
  const entries: Array<[PyNode, PyNode]> = srcInfo && srcInfo.kind === 'dict' ? [...srcInfo.entries] : [];
  const match = opts.match ?? srcEntry.syncInfo.lastSyncMatch;
  if (match !== undefined) setEntry(entries, 'last_sync_match', N.int(match));
  setEntry(entries, 'last_sync_time', N.str(when.toISOString().replace(/Z$/, '+00:00')));
  setEntry(entries, 'sync_reason', N.str(opts.reason));
  setEntry(
    entries,
    'lora_sync',
    N.dict([
      [N.str('tensors'), N.str(srcEntry.tensorsDigest)],
      [N.str('alg'), N.str(DIGEST_ALG)],
      [N.str('source'), N.str(srcEntry.path)],
    ]),
  );
  return N.dict(entries);
}

/**
 * The new tree: the source's root with a new metadata mapping = the source's general keys, then the
 * copy's own keys as they were in the copy (moved over as nodes, so any Python value survives),
 * and the new sync_info. A copy key the copy lacks is not taken from the source.
 */
function mergedRoot(src: Checkpoint, copy: Checkpoint, cfg: EngineConfig, info: PyNode): PyNode {
  const srcEntries = mappingEntries(src.root!)!;
  const srcMeta = getKey(src.root!, 'metadata');
  const copyMeta = copy.root ? getKey(copy.root, 'metadata') : undefined;
  const metaEntries: Array<[PyNode, PyNode]> = [];
  for (const [k, v] of (srcMeta && mappingEntries(srcMeta)) ?? []) {
    if (k.kind === 'str' && cfg.copyKeys.includes(k.value)) continue;
    metaEntries.push([k, v]);
  }
  for (const [k, v] of (copyMeta && mappingEntries(copyMeta)) ?? []) {
    if (k.kind === 'str' && cfg.copyKeys.includes(k.value)) metaEntries.push([k, v]);
  }
  setEntry(metaEntries, 'sync_info', info);
  const meta = N.dict(metaEntries);
  const rootEntries: Array<[PyNode, PyNode]> = srcEntries.map(([k, v]) => [
    k,
    k.kind === 'str' && k.value === 'metadata' ? meta : v,
  ]);
  if (!srcMeta) rootEntries.push([N.str('metadata'), meta]);
  return N.dict(rootEntries);
}

/**
 * Whether a torch source carries metadata a sync record can join (the seed's dict with `metadata` or
 * `lora_params`). A plain state dict does not: it is a flat {name: tensor} mapping that loaders check
 * key by key (`load_state_dict(strict=True)`), so nothing is added to it (see syncRecords.ts).
 */
export function carriesMetadata(src: Checkpoint): boolean {
  const meta = src.root ? getKey(src.root, 'metadata') : undefined;
  return !!src.root && (!!(meta && mappingEntries(meta)) || !!getKey(src.root, 'lora_params'));
}

/** A `.bin` / `.pt` copy of a safetensors source: its tensors as a plain state dict (stateDictOfSafetensors.ts). */
export async function writeStateDictCopy(abs: string, src: Checkpoint, how: AtomicWriteOptions): Promise<void> {
  const { root, storages } = stateDictOfSafetensors(src);
  await atomicWrite(abs, (fh) => writeTorchCheckpoint(fh, { prefix: torchPrefixFor(abs), root, storages }), how);
}

export async function writeTorchCopy(
  abs: string,
  src: Checkpoint,
  copy: Checkpoint,
  cfg: EngineConfig,
  info: PyNode | undefined,
  how: AtomicWriteOptions,
): Promise<void> {
  // Without metadata to join (info undefined), the source's object is written as it is, OrderedDict and `_metadata` included.
  const root = info ? mergedRoot(src, copy, cfg, info) : src.root!;
  await atomicWrite(
    abs,
    (fh) => writeTorchCheckpoint(fh, { prefix: torchPrefixFor(abs), root, storages: storageSourcesOf(src) }),
    how,
  );
}
