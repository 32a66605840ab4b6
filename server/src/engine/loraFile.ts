/**
 * One checkpoint file as the engine sees it: a plain, serialisable record (it is what the index
 * caches) of its identity, role, tensor fingerprints, metadata digests and sync_info. Reading a file
 * never throws for bad content: a corrupt or unsafe file is an entry that says so.
 */
import { stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { Checkpoint, CheckpointFormat, openCheckpoint } from '../formats/checkpoint';
import { createHash } from 'node:crypto';
import { fingerprintCheckpoint, DIGEST_ALG, tensorTypedLookup } from '../formats/fingerprint';
import { isFormatError } from '../formats/errors';
import { PyNode, getKey, mappingEntries } from '../formats/pickle/nodes';
import { typedForm } from '../formats/pyValue';
import { EngineConfig } from './config';

export interface TensorEntry { name: string; dtype: string; shape: number[]; digest: string }

export interface SyncInfo {
  lastSyncMatch?: number;
  lastSyncTime?: string;
  reason?: string;
  /** What this engine wrote at its own last sync of the file: the tensors it was given. */
  engine?: { tensors: string; alg: string; source?: string };
}

export type EntryKind = 'lora' | 'unrecognized' | 'corrupt';

export interface FileEntry {
  /** Relative to the workspace root, '/' separators, NFC. */
  path: string;
  size: number;
  mtimeMs: number;
  /** Exact modification time (ns, decimal): what "unchanged since the plan" is checked against. */
  mtimeNs: string;
  ino: number;
  kind: EntryKind;
  format?: CheckpointFormat;
  role?: 'source' | 'copy';
  /** Why the file is corrupt: the reader's error code and message, or the records whose CRC failed. */
  error?: { code: string; message: string };
  /** Globals that would run code on torch.load (non-empty: UNSAFE). */
  unsafeGlobals: string[];
  loraId?: string;
  name?: string;
  idFrom?: 'metadata' | 'filename';
  tensors: TensorEntry[];
  /** Digest of the sorted (name, dtype, shape, digest) list: equal means every tensor is equal. */
  tensorsDigest: string;
  /** Digest of the general metadata (copy keys and ignored keys left out). */
  metaDigest: string;
  /** Per general-metadata key digest, to say which keys differ. */
  metaKeys: Record<string, string>;
  /** Per-copy keys the file holds. */
  copyKeys: string[];
  syncInfo: SyncInfo;
}

/** The seed's naming: a source is `<name>.pt`, a copy `<name>_<shortid>.pt`. */
export function nameFromFile(file: string, role: 'source' | 'copy'): string {
  const stem = basename(file).replace(/\.(pt|pth|bin|safetensors)$/i, '');
  if (role === 'source') return stem;
  const m = /^(.*)_[0-9A-Za-z]{4,12}$/.exec(stem);
  return m ? m[1] : stem;
}

export function isSourcePath(rel: string, cfg: EngineConfig): boolean {
  const folders = dirname(rel).split('/');
  return folders.some((f) => cfg.sourceFolders.some((s) => f.normalize('NFC').includes(s)));
}

function strOf(n: PyNode | undefined): string | undefined {
  if (!n) return undefined;
  if (n.kind === 'str') return n.value;
  if (n.kind === 'int') return n.value.toString();
  return undefined;
}
function intOf(n: PyNode | undefined): number | undefined {
  if (!n) return undefined;
  if (n.kind === 'int') return Number(n.value);
  if (n.kind === 'float' && Number.isFinite(n.value)) return n.value;
  return undefined;
}

export function syncInfoOf(n: PyNode | undefined): SyncInfo {
  if (!n || !mappingEntries(n)) return {};
  const eng = getKey(n, 'lora_sync');
  const tensors = eng ? strOf(getKey(eng, 'tensors')) : undefined;
  return {
    lastSyncMatch: intOf(getKey(n, 'last_sync_match')),
    lastSyncTime: strOf(getKey(n, 'last_sync_time')),
    reason: strOf(getKey(n, 'sync_reason')),
    engine: eng && tensors ? { tensors, alg: strOf(getKey(eng, 'alg')) ?? '', source: strOf(getKey(eng, 'source')) } : undefined,
  };
}

/**
 * Digests of small things (a list of tensor digests, one metadata value): SHA-256, synchronous.
 * These inputs are bytes to kilobytes, where a synchronous native hash beats an async round trip.
 */
function smallDigest(s: string, hexChars = 32): string {
  return createHash('sha256').update(s).digest('hex').slice(0, hexChars);
}

/** Per metadata key: 64 bits say "same value or not" between a copy and its source, and keep the cache small. */
const keyDigestOf = (s: string) => smallDigest(s, 16);

function tensorsDigestOf(tensors: TensorEntry[]): string {
  const sorted = [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return smallDigest(JSON.stringify(sorted.map((t) => [t.name, t.dtype, t.shape, t.digest])));
}

/**
 * Reads one file into an entry. `rel` is the NFC relative path; `abs` where it is on disk. `key` is
 * the (size, mtime ns, inode) the caller just saw, so the file is not stat'ed twice; taken before the
 * read, any later change shows up as a new key and the file is read again.
 */
export async function readEntry(abs: string, rel: string, cfg: EngineConfig, key?: { size: number; mtimeNs: string; ino: number }): Promise<FileEntry> {
  if (!key) {
    const st = await stat(abs, { bigint: true });
    key = { size: Number(st.size), mtimeNs: st.mtimeNs.toString(), ino: Number(st.ino) };
  }
  const base: FileEntry = {
    path: rel, size: key.size, mtimeMs: Number(BigInt(key.mtimeNs) / 1_000_000n), mtimeNs: key.mtimeNs, ino: key.ino, kind: 'corrupt', role: isSourcePath(rel, cfg) ? 'source' : 'copy', unsafeGlobals: [],
    tensors: [], tensorsDigest: '', metaDigest: '', metaKeys: {}, copyKeys: [], syncInfo: {},
  };
  let c: Checkpoint;
  try {
    c = await openCheckpoint(abs);
  } catch (e) {
    if (!isFormatError(e)) throw e;
    const kind: EntryKind = e.code === 'NOT_A_CHECKPOINT' ? 'unrecognized' : 'corrupt';
    return { ...base, kind, error: { code: e.code, message: e.message } };
  }
  try {
    const fp = await fingerprintCheckpoint(c).catch((e) => {
      if (isFormatError(e)) return e;
      throw e;
    });
    if (isFormatError(fp)) return { ...base, format: c.format, error: { code: fp.code, message: fp.message } };
    const entry: FileEntry = { ...base, format: c.format, unsafeGlobals: c.unsafe.map((u) => u.global) };
    if (fp.crcFailures.length) {
      entry.error = { code: 'CRC_MISMATCH', message: `CRC32 mismatch in ${fp.crcFailures.map((f) => f.record).join(', ')}: the bytes changed after the file was written` };
      return entry;
    }
    return await describeLora(c, fp.tensors, entry, cfg);
  } finally {
    await c.close();
  }
}

async function describeLora(c: Checkpoint, fps: Array<{ path: string; dtype: string; shape: number[]; digest: string }>, entry: FileEntry, cfg: EngineConfig): Promise<FileEntry> {
  const role = entry.role!;
  const metaKeys: Record<string, string> = {};
  const copyKeys: string[] = [];
  let loraId: string | undefined;
  let name: string | undefined;
  let tensors: TensorEntry[];
  let syncInfo: SyncInfo = {};
  if (c.format === 'safetensors') {
    const md = c.safetensorsMetadata ?? {};
    loraId = md.id;
    name = md.name;
    const looksLora = !!loraId || c.tensors.some((t) => /lora/i.test(t.path));
    if (!looksLora) return { ...entry, kind: 'unrecognized' };
    tensors = fps.map((t) => ({ name: t.path, dtype: t.dtype, shape: t.shape, digest: t.digest }));
    for (const [k, v] of Object.entries(md)) {
      if (cfg.copyKeys.includes(k)) copyKeys.push(k);
      else if (!cfg.ignoreKeys.includes(k)) metaKeys[k] = keyDigestOf(JSON.stringify(v));
    }
    if (md.sync_info) {
      try {
        const s = JSON.parse(md.sync_info);
        syncInfo = { lastSyncMatch: s.last_sync_match, lastSyncTime: s.last_sync_time, reason: s.sync_reason, engine: s.lora_sync };
      } catch {
        // a sync_info that is not JSON is just not ours
      }
    }
  } else {
    const root = c.root;
    const entries = root ? mappingEntries(root) : undefined;
    const params = root ? getKey(root, 'lora_params') : undefined;
    const meta = root ? getKey(root, 'metadata') : undefined;
    loraId = meta ? strOf(getKey(meta, 'id')) : undefined;
    name = meta ? strOf(getKey(meta, 'name')) : undefined;
    if (!entries || (!params && !loraId) || c.format === 'torchscript') return { ...entry, kind: 'unrecognized' };
    const prefix = params ? 'lora_params.' : '';
    tensors = fps.filter((t) => (prefix ? t.path.startsWith(prefix) : !t.path.startsWith('metadata.'))).map((t) => ({ name: t.path.slice(prefix.length), dtype: t.dtype, shape: t.shape, digest: t.digest }));
    const lookup = tensorTypedLookup(c, { alg: DIGEST_ALG, tensors: fps.map((f) => ({ ...f, bytes: 0 })), crcFailures: [], crcChecked: true });
    const keyDigest = (v: PyNode) => keyDigestOf(JSON.stringify(typedForm(v, lookup, true)));
    // General metadata: every top-level key but lora_params, with metadata's own keys one by one.
    for (const [k, v] of entries) {
      const key = k.kind === 'str' ? k.value : JSON.stringify(typedForm(k));
      if (key === 'lora_params') continue;
      if (key === 'metadata' && mappingEntries(v)) {
        for (const [mk, mv] of mappingEntries(v)!) {
          const mkey = mk.kind === 'str' ? mk.value : JSON.stringify(typedForm(mk));
          if (cfg.copyKeys.includes(mkey)) copyKeys.push(mkey);
          else if (!cfg.ignoreKeys.includes(mkey)) metaKeys[`metadata.${mkey}`] = keyDigest(mv);
        }
      } else {
        metaKeys[key] = keyDigest(v);
      }
    }
    syncInfo = syncInfoOf(meta ? getKey(meta, 'sync_info') : undefined);
  }
  const idFrom = loraId ? 'metadata' : 'filename';
  const fileName = nameFromFile(entry.path, role);
  name ??= fileName;
  if (!loraId) loraId = `name:${fileName}`;
  const metaDigest = smallDigest(JSON.stringify(Object.entries(metaKeys).sort()));
  return {
    ...entry, kind: 'lora', role, loraId, name, idFrom, tensors,
    tensorsDigest: tensorsDigestOf(tensors), metaDigest, metaKeys, copyKeys, syncInfo,
  };
}
