/**
 * Writes a torch checkpoint in torch 1.13's own layout from a pickle tree and the storages it
 * names: `<prefix>/data.pkl`, `<prefix>/data/<key>` in string order, `<prefix>/version`. Storage
 * bytes are streamed from another file's record ranges, never buffered whole, and their CRC is
 * checked against the record they came from as they are copied.
 */
import type { FileHandle } from 'node:fs/promises';
import { basename } from 'node:path';
import { encodePickle } from '../pickle/encoder';
import * as N from '../pickle/nodes';
import type { PyNode, PyPersId, PyTuple } from '../pickle/nodes';
import { itemSize } from '../dtypes';
import { writeTorchZip, type ZipEntry, type ZipSource } from '../zip/zipWriter';
import type { Checkpoint } from '../checkpoint';
import { findTensors } from './torchPickle';
import { FormatError } from '../errors';

/** The archive folder torch.save(obj, path) uses: the file name without its last extension. */
export function torchPrefixFor(path: string): string {
  const b = basename(path);
  const dot = b.lastIndexOf('.');
  return dot > 0 ? b.slice(0, dot) : b;
}

export interface TorchWriteInput {
  prefix: string;
  root: PyNode;
  /** Storage key -> where its bytes come from. Every key the tree uses must be present. */
  storages: Map<string, ZipSource>;
  /** Default '3' (torch 1.13 and 2.x). */
  version?: string;
}

/**
 * Legacy checkpoints name storages with 6-tuples `('storage', cls, key, location, numel, view)`;
 * the zip loader wants 5-tuples and no storage views. Rewrites those persistent ids in place
 * (a legacy view becomes its root storage plus an element offset on the tensor).
 */
function zipPersistentIds(root: PyNode, storages: Map<string, ZipSource>): void {
  for (const t of findTensors(root)) {
    const args = t.node.args as PyTuple;
    const pidNode = args.items[0] as PyPersId;
    const pid = pidNode.pid as PyTuple;
    if (pid.items.length === 5) continue;
    const [tag, cls, , location] = pid.items;
    const view = t.storage.legacyView;
    const key = view?.rootKey ?? t.storage.key;
    const src = storages.get(key);
    const numel =
      view && src
        ? (src.kind === 'buffer' ? src.data.length : src.length) / itemSize(t.storage.dtype)
        : t.storage.numel;
    pidNode.pid = N.tuple([tag, cls, N.str(key), location, N.int(numel)]);
    if (view) args.items[1] = N.int(t.storageOffset + view.offset);
  }
}

export async function writeTorchCheckpoint(out: FileHandle, input: TorchWriteInput): Promise<{ bytes: number }> {
  zipPersistentIds(input.root, input.storages);
  const pkl = encodePickle(input.root);
  const keys = [...new Set(findTensors(input.root).map((t) => t.storage.legacyView?.rootKey ?? t.storage.key))];
  for (const k of keys)
    if (!input.storages.has(k)) throw new FormatError('MISSING_RECORD', `no bytes for storage ${k}`, k);
  // torch sorts storage keys as strings: data/0, data/1, data/10, data/2, ...
  keys.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const entries: ZipEntry[] = [
    { name: `${input.prefix}/data.pkl`, source: { kind: 'buffer', data: pkl } },
    ...keys.map((k) => ({ name: `${input.prefix}/data/${k}`, source: input.storages.get(k)! })),
    { name: `${input.prefix}/version`, source: { kind: 'buffer', data: Buffer.from(`${input.version ?? '3'}\n`) } },
  ];
  const r = await writeTorchZip(out, entries);
  return { bytes: r.bytes };
}

/**
 * The storages of an open checkpoint as zip sources. STORED zip records are copied from their
 * byte range with their CRC as the expected value; legacy and safetensors storages by range.
 */
export function storageSourcesOf(c: Checkpoint): Map<string, ZipSource> {
  const m = new Map<string, ZipSource>();
  for (const s of c.storages.values()) {
    if (s.inflated) m.set(s.key, { kind: 'buffer', data: s.inflated.subarray(0, s.byteLength) });
    else if (s.record && s.record.method === 0) {
      m.set(s.key, {
        kind: 'range',
        fh: c.fh,
        offset: s.record.dataOffset,
        length: s.record.size,
        expectedCrc32: s.record.crc32,
      });
    } else m.set(s.key, { kind: 'range', fh: c.fh, offset: s.offset, length: s.byteLength });
  }
  return m;
}
