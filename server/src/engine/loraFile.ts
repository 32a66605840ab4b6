/**
 * One checkpoint file as the engine sees it: a plain, serialisable record (it is what the index
 * caches) of its identity, role, tensor fingerprints, metadata digests and sync_info. Reading a file
 * never throws for bad content: a corrupt or unsafe file is an entry that says so.
 */
import { stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { type Checkpoint, type CheckpointFormat, openCheckpoint } from '../formats/checkpoint';
import { hash } from 'node:crypto';
import { fingerprintCheckpoint, DIGEST_ALG, tensorTypedLookup, type TensorFingerprint } from '../formats/fingerprint';
import { isFormatError } from '../formats/errors';
import { type PyNode, getKey, mappingEntries } from '../formats/pickle/nodes';
import { type Typed, typedForm, typedFormJson } from '../formats/pyValue';
import type { EngineConfig } from './config';
import type { LayoutKind, TrainingProgress } from '../layouts/types';
import { EMBEDDED_KEYS } from '../layouts/ecosystemHashes';
import { UNIT_CONFIG_KEY, unitConfigAt, unitName, unitOf } from './unitFiles';

export interface TensorEntry {
  name: string;
  dtype: string;
  shape: number[];
  digest: string;
}

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
  /**
   * Which layout the file is (seed dict, PEFT adapter, kohya, diffusers, plain state dict), from
   * layouts/recognize.ts; undefined for files that are not LoRAs.
   */
  layout?: LayoutKind;
  /** What a sync writes as one: the file itself, or (PEFT, diffusers) the folder holding it. Relative path. */
  unit?: { kind: 'file' | 'folder'; path: string };
  /** Where in its training run the file is (kohya epochs and steps, Trainer checkpoints). */
  version?: TrainingProgress;
  /** One training run (kohya `ss_session_id`): two runs of one name are two LoRAs. */
  session?: string;
  tensors: TensorEntry[];
  /** Digest of the sorted (name, dtype, shape, digest) list: equal means every tensor is equal. */
  tensorsDigest: string;
  /** Digest of the general metadata (copy keys and ignored keys left out). */
  metaDigest: string;
  /** Per general-metadata key digest, to say which keys differ. Shared between entries: read-only. */
  metaKeys: Record<string, string>;
  /** Per-copy keys the file holds. */
  copyKeys: string[];
  syncInfo: SyncInfo;
}

/**
 * An entry with every field, in one order (absent ones undefined): all entries then share one object
 * layout with the fields inside the object, which for 60,000 files is megabytes less than the layouts
 * that spreads and late additions give. Returns a new object.
 */
export function makeEntry(e: FileEntry): FileEntry {
  return {
    path: e.path,
    size: e.size,
    mtimeMs: e.mtimeMs,
    mtimeNs: e.mtimeNs,
    ino: e.ino,
    kind: e.kind,
    format: e.format,
    role: e.role,
    error: e.error,
    unsafeGlobals: e.unsafeGlobals,
    loraId: e.loraId,
    name: e.name,
    idFrom: e.idFrom,
    layout: e.layout,
    unit: e.unit,
    version: e.version,
    session: e.session,
    tensors: e.tensors,
    tensorsDigest: e.tensorsDigest,
    metaDigest: e.metaDigest,
    metaKeys: e.metaKeys,
    copyKeys: e.copyKeys,
    syncInfo: e.syncInfo,
  };
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
    engine:
      eng && tensors
        ? { tensors, alg: strOf(getKey(eng, 'alg')) ?? '', source: strOf(getKey(eng, 'source')) }
        : undefined,
  };
}

/**
 * Digests of small things (a list of tensor digests, one metadata value): SHA-256, synchronous.
 * These inputs are bytes to kilobytes, where a synchronous native hash beats an async round trip.
 */
function smallDigest(s: string, hexChars = 32): string {
  // crypto.hash: one call, no Hash object (a scan makes a dozen of these per file).
  return hash('sha256', s, 'hex').slice(0, hexChars);
}

/** Per metadata key: 64 bits say "same value or not" between a copy and its source, and keep the cache small. */
const keyDigestOf = (s: string) => smallDigest(s, 16);

/**
 * Digest of the sorted (key, digest) pairs. The order is the default sort's (by the text "key,digest"),
 * with each pair's text made once rather than at every comparison.
 */
function metaDigestOf(metaKeys: Record<string, string>): string {
  const keyed = Object.entries(metaKeys).map((p) => ({ text: `${p[0]},${p[1]}`, p }));
  keyed.sort((a, b) => (a.text < b.text ? -1 : a.text > b.text ? 1 : 0));
  return smallDigest(JSON.stringify(keyed.map((k) => k.p)));
}

function tensorsDigestOf(tensors: TensorEntry[]): string {
  const sorted = [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return smallDigest(JSON.stringify(sorted.map((t) => [t.name, t.dtype, t.shape, t.digest])));
}

/** Whole milliseconds of a decimal nanosecond time (rounded down, as the bigint division did). */
export function msOfNs(ns: string): number {
  return /^\d{7,21}$/.test(ns) ? Number(ns.slice(0, -6)) : Number(BigInt(ns) / 1_000_000n);
}

/**
 * Reads one file into an entry. `rel` is the NFC relative path; `abs` where it is on disk. `key` is
 * the (size, mtime ns, inode) the caller just saw, so the file is not stat'ed twice; taken before the
 * read, any later change shows up as a new key and the file is read again.
 */
export async function readEntry(
  abs: string,
  rel: string,
  cfg: EngineConfig,
  key?: { size: number; mtimeNs: string; ino: number },
): Promise<FileEntry> {
  if (!key) {
    const st = await stat(abs, { bigint: true });
    key = { size: Number(st.size), mtimeNs: st.mtimeNs.toString(), ino: Number(st.ino) };
  }
  const base: FileEntry = {
    path: rel,
    size: key.size,
    mtimeMs: msOfNs(key.mtimeNs),
    mtimeNs: key.mtimeNs,
    ino: key.ino,
    kind: 'corrupt',
    role: isSourcePath(rel, cfg) ? 'source' : 'copy',
    unsafeGlobals: [],
    tensors: [],
    tensorsDigest: '',
    metaDigest: '',
    metaKeys: {},
    copyKeys: [],
    syncInfo: {},
  };
  let c: Checkpoint;
  try {
    c = await openCheckpoint(abs, { expectedSize: key.size });
  } catch (e) {
    if (!isFormatError(e)) throw e;
    // What the safety scan found outranks the error: a plain pickle that names code is no harmless
    // "unrecognized" file, and a pickle that breaks after its payload still runs it.
    const unsafe = e.unsafe?.length ? e.unsafe.map((u) => u.global) : undefined;
    const kind: EntryKind = e.code === 'NOT_A_CHECKPOINT' && !unsafe ? 'unrecognized' : 'corrupt';
    return makeEntry({ ...base, kind, error: { code: e.code, message: e.message }, unsafeGlobals: unsafe ?? [] });
  }
  try {
    // Known before anything else can fail: an unsafe file stays unsafe whatever breaks later.
    if (c.unsafe.length) base.unsafeGlobals = c.unsafe.map((u) => u.global);
    const fp = await fingerprintCheckpoint(c).catch((e) => {
      if (isFormatError(e)) return e;
      throw e;
    });
    if (isFormatError(fp))
      return makeEntry({ ...base, format: c.format, error: { code: fp.code, message: fp.message } });
    base.format = c.format;
    const entry = base;
    if (fp.crcFailures.length) {
      entry.error = {
        code: 'CRC_MISMATCH',
        message: `CRC32 mismatch in ${fp.crcFailures.map((f) => f.record).join(', ')}: the bytes changed after the file was written`,
      };
      return makeEntry(entry);
    }
    return await withUnitConfig(await describeLora(c, fp.tensors, entry, cfg), abs);
  } finally {
    await c.close();
  }
}

/**
 * A folder unit's config (PEFT's `adapter_config.json`) is part of its general metadata: a copy whose
 * config differs from its source's is METADATA_DRIFT (unitFiles.ts).
 */
async function withUnitConfig(e: FileEntry, abs: string): Promise<FileEntry> {
  if (e.kind !== 'lora' || unitOf(e).kind !== 'folder') return e;
  const config = await unitConfigAt(abs);
  if (!config) return e;
  const metaKeys = { ...e.metaKeys, [UNIT_CONFIG_KEY]: config.digest };
  return makeEntry({ ...e, metaKeys, metaDigest: metaDigestOf(metaKeys) });
}

/** What a LoRA file says about itself, before it becomes an entry. */
interface LoraParts {
  loraId?: string;
  name?: string;
  tensors: TensorEntry[];
  /** General metadata key -> the canonical text of its value (a later duplicate key wins). */
  texts: Map<string, string>;
  copyKeys: string[];
  syncInfo: SyncInfo;
}

// Small functions rather than one: each is compiled on its own (in every thread that reads), and one
// large function with all of this inlined cost V8 more to compile than a 6,000-file scan spends in it.
async function describeLora(
  c: Checkpoint,
  fps: TensorFingerprint[],
  entry: FileEntry,
  cfg: EngineConfig,
): Promise<FileEntry> {
  const parts = c.format === 'safetensors' ? safetensorsParts(c, fps, cfg) : torchParts(c, fps, cfg);
  // Not a LoRA, but naming code: an unsafe file (kind 'corrupt' keeps it out of the harmless unrecognized ones).
  if (!parts) return makeEntry({ ...entry, kind: entry.unsafeGlobals.length ? 'corrupt' : 'unrecognized' });
  return loraEntry(entry, parts);
}

function safetensorsParts(c: Checkpoint, fps: TensorFingerprint[], cfg: EngineConfig): LoraParts | undefined {
  const md = c.safetensorsMetadata ?? {};
  const loraId = md.id;
  const looksLora = !!loraId || c.tensors.some((t) => /lora/i.test(t.path));
  if (!looksLora) return undefined;
  const parts: LoraParts = {
    loraId,
    name: md.name,
    tensors: fps.map((t) => ({ name: t.path, dtype: t.dtype, shape: t.shape, digest: t.digest })),
    texts: new Map(),
    copyKeys: [],
    syncInfo: {},
  };
  for (const [k, v] of Object.entries(md)) {
    if (cfg.copyKeys.includes(k)) parts.copyKeys.push(k);
    // Embedded hashes describe the bytes, which the tensors already compare: a sync sets them right for
    // the copy, so a source that embeds wrong ones must not leave its copies drifting for ever.
    else if (!cfg.ignoreKeys.includes(k) && !(EMBEDDED_KEYS as readonly string[]).includes(k))
      parts.texts.set(k, JSON.stringify(v));
  }
  if (md.sync_info) {
    try {
      const s = JSON.parse(md.sync_info);
      parts.syncInfo = {
        lastSyncMatch: s.last_sync_match,
        lastSyncTime: s.last_sync_time,
        reason: s.sync_reason,
        engine: s.lora_sync,
      };
    } catch {
      // a sync_info that is not JSON is just not ours
    }
  }
  return parts;
}

function torchParts(c: Checkpoint, fps: TensorFingerprint[], cfg: EngineConfig): LoraParts | undefined {
  const root = c.root;
  const entries = root ? mappingEntries(root) : undefined;
  const params = root ? getKey(root, 'lora_params') : undefined;
  const meta = root ? getKey(root, 'metadata') : undefined;
  const loraId = meta ? strOf(getKey(meta, 'id')) : undefined;
  if (!entries || (!params && !loraId) || c.format === 'torchscript') return undefined;
  const parts: LoraParts = {
    loraId,
    name: meta ? strOf(getKey(meta, 'name')) : undefined,
    tensors: loraTensors(fps, params ? 'lora_params.' : ''),
    texts: new Map(),
    copyKeys: [],
    syncInfo: {},
  };
  generalMetadata(
    entries,
    tensorTypedLookup(c, { alg: DIGEST_ALG, tensors: fps, crcFailures: [], crcChecked: true }),
    cfg,
    parts,
  );
  parts.syncInfo = syncInfoOf(meta ? getKey(meta, 'sync_info') : undefined);
  return parts;
}

/**
 * The name the index gives the tensor at `path`: with a `lora_params` dict (prefix `lora_params.`)
 * the tensors under it, named without the prefix; without one, every tensor but metadata's.
 * undefined: not one of the LoRA's tensors. The inspector's per-tensor diff names them the same way.
 */
export function loraTensorName(path: string, prefix: string): string | undefined {
  if (prefix ? !path.startsWith(prefix) : path.startsWith('metadata.')) return undefined;
  return path.slice(prefix.length);
}

function loraTensors(fps: TensorFingerprint[], prefix: string): TensorEntry[] {
  const out: TensorEntry[] = [];
  for (const t of fps) {
    const name = loraTensorName(t.path, prefix);
    if (name !== undefined) out.push({ name, dtype: t.dtype, shape: t.shape, digest: t.digest });
  }
  return out;
}

/** General metadata: every top-level key but lora_params, with metadata's own keys one by one. */
function generalMetadata(
  entries: Array<[PyNode, PyNode]>,
  lookup: (n: PyNode) => Typed | undefined,
  cfg: EngineConfig,
  parts: LoraParts,
): void {
  for (const [k, v] of entries) {
    const key = k.kind === 'str' ? k.value : JSON.stringify(typedForm(k));
    if (key === 'lora_params') continue;
    const inner = key === 'metadata' ? mappingEntries(v) : undefined;
    if (!inner) {
      parts.texts.set(key, typedFormJson(v, lookup));
      continue;
    }
    for (const [mk, mv] of inner) {
      const mkey = mk.kind === 'str' ? mk.value : JSON.stringify(typedForm(mk));
      if (cfg.copyKeys.includes(mkey)) parts.copyKeys.push(mkey);
      else if (!cfg.ignoreKeys.includes(mkey)) parts.texts.set(`metadata.${mkey}`, typedFormJson(mv, lookup));
    }
  }
}

function loraEntry(entry: FileEntry, p: LoraParts): FileEntry {
  // A folder unit (PEFT, diffusers) is named by its folder, as the layout recognizers name it.
  const fileName = unitName(entry.path) ?? nameFromFile(entry.path, entry.role!);
  const metaKeys: Record<string, string> = {};
  for (const [k, text] of p.texts) metaKeys[k] = keyDigestOf(text);
  return makeEntry({
    path: entry.path,
    size: entry.size,
    mtimeMs: entry.mtimeMs,
    mtimeNs: entry.mtimeNs,
    ino: entry.ino,
    kind: 'lora',
    format: entry.format,
    role: entry.role,
    unsafeGlobals: entry.unsafeGlobals,
    loraId: p.loraId || `name:${fileName}`,
    name: p.name ?? fileName,
    idFrom: p.loraId ? 'metadata' : 'filename',
    tensors: p.tensors,
    tensorsDigest: tensorsDigestOf(p.tensors),
    metaDigest: metaDigestOf(metaKeys),
    metaKeys,
    copyKeys: p.copyKeys,
    syncInfo: p.syncInfo,
  });
}
