/**
 * What a torch (.pt) copy is made of: the source's object with a merged `metadata` mapping (the
 * source's general keys, the copy's own keys as they were, a new `sync_info`), written with the
 * source's storages; or, for a plain state dict that has no metadata to join, the source's object
 * as it is. The safetensors counterpart is safetensorsCopy.ts.
 */
import type { Checkpoint } from '../formats/checkpoint';
import { FormatError } from '../formats/errors';
import { DIGEST_ALG } from '../formats/fingerprint';
import * as N from '../formats/pickle/nodes';
import { type PyNode, type PyPersId, type PyTuple, getKey, mappingEntries } from '../formats/pickle/nodes';
import { writeTorchCheckpoint, storageSourcesOf, torchPrefixFor } from '../formats/torch/ptWriter';
import { findTensors } from '../formats/torch/torchPickle';
import type { ZipSource } from '../formats/zip/zipWriter';
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
function mergedRoot(
  src: Checkpoint,
  copy: Checkpoint,
  cfg: EngineConfig,
  info: PyNode,
  storages: Map<string, ZipSource>,
): PyNode {
  const srcEntries = mappingEntries(src.root!)!;
  const srcMeta = getKey(src.root!, 'metadata');
  const copyMeta = copy.root ? getKey(copy.root, 'metadata') : undefined;
  const metaEntries: Array<[PyNode, PyNode]> = [];
  for (const [k, v] of (srcMeta && mappingEntries(srcMeta)) ?? []) {
    if (k.kind === 'str' && cfg.copyKeys.includes(k.value)) continue;
    metaEntries.push([k, v]);
  }
  const kept: PyNode[] = [];
  for (const [k, v] of (copyMeta && mappingEntries(copyMeta)) ?? []) {
    if (k.kind === 'str' && cfg.copyKeys.includes(k.value)) {
      metaEntries.push([k, v]);
      kept.push(v);
    }
  }
  carryCopyTensors(kept, copy, storages);
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
 * A copy's own key may hold a tensor (`score: torch.tensor(0.87)`): its storage lives in the copy's
 * file, under a key the source may use for another storage. Each such storage is added to `storages`
 * under a key of its own (the next number the source does not use) and the copy's persistent ids are
 * renamed to it, so the new file holds the copy's bytes, never the source's under a clashing key.
 * The renaming is done in the copy's own tree, which then no longer matches the copy's storages: the
 * executor closes the copy right after this write (syncExecutor.ts) and nothing reads it again.
 */
function carryCopyTensors(kept: PyNode[], copy: Checkpoint, storages: Map<string, ZipSource>): void {
  const tensors = kept.flatMap((v) => findTensors(v));
  if (!tensors.length) return;
  const fromCopy = storageSourcesOf(copy);
  const renamed = new Map<string, string>();
  let next = 0;
  for (const k of storages.keys()) if (/^\d+$/.test(k)) next = Math.max(next, Number(k) + 1);
  for (const t of tensors) {
    const old = t.storage.legacyView?.rootKey ?? t.storage.key;
    let key = renamed.get(old);
    if (key === undefined) {
      const bytes = fromCopy.get(old);
      if (!bytes)
        throw new FormatError('MISSING_RECORD', `the copy's own metadata names storage ${old}, which it lacks`, old);
      while (storages.has(String(next))) next++;
      key = String(next++);
      renamed.set(old, key);
      storages.set(key, bytes);
    }
    const pidNode = (t.node.args as PyTuple).items[0] as PyPersId;
    const items = [...(pidNode.pid as PyTuple).items];
    items[2] = N.str(key);
    // A legacy view names its root storage too: the writer turns it into that storage plus an offset.
    const view = items[5];
    if (view?.kind === 'tuple' && view.items.length === 3)
      items[5] = N.tuple([N.str(key), view.items[1], view.items[2]]);
    pidNode.pid = N.tuple(items);
  }
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
  const storages = storageSourcesOf(src);
  // Without metadata to join (info undefined), the source's object is written as it is, OrderedDict and `_metadata` included.
  const root = info ? mergedRoot(src, copy, cfg, info, storages) : src.root!;
  await atomicWrite(abs, (fh) => writeTorchCheckpoint(fh, { prefix: torchPrefixFor(abs), root, storages }), how);
}
