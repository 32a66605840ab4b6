/**
 * One checkpoint file as the engine sees it: a plain, serialisable record (it is what the index
 * caches) of its identity, role, tensor fingerprints, metadata digests and sync_info. Reading a file
 * never throws for bad content: a corrupt or unsafe file is an entry that says so.
 */
import { open, readdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { type Checkpoint, type CheckpointFormat, openCheckpoint } from '../formats/checkpoint';
import { hash } from 'node:crypto';
import { fingerprintCheckpoint, DIGEST_ALG, tensorTypedLookup, type TensorFingerprint } from '../formats/fingerprint';
import { isFormatError } from '../formats/errors';
import { type PyNode, getKey, mappingEntries } from '../formats/pickle/nodes';
import { type Typed, typedForm, typedFormJson } from '../formats/pyValue';
import type { EngineConfig } from './config';
import type { LayoutKind, Recognized, TrainingProgress } from '../layouts/types';
import { describeCheckpoint, type FolderFacts } from '../layouts/describe';
import { recognize } from '../layouts/recognize';
import { layoutLoraId } from '../layouts/runs';
import { nameFromFileName } from '../layouts/fileName';
import { LFS_POINTER_MAX_BYTES, lfsPointerIssue, parseLfsPointer } from '../layouts/lfsPointer';
import { EMBEDDED_KEYS, embeddedHashReport } from '../layouts/ecosystemHashes';
import { matchesSourceFolder } from './sourceFolders';
import { configDigestOf, MAX_CONFIG_BYTES } from './unitFiles';

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
  /**
   * What the file itself says its LoRA is: its `metadata.id`, its layout's name (kohya
   * `ss_output_name`, the PEFT or diffusers folder) or its file name. The copy map may tie a copy to
   * another LoRA by its sync record or its content (copyMap.ts `identifiedBy`).
   */
  idFrom?: 'metadata' | 'filename' | 'layout';
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
  /** Unrecognized files: why the file is no LoRA, in a few words (`no LoRA tensor names`). */
  why?: string;
  /**
   * PEFT and diffusers units: the key (size:mtime ns:inode, or `none`) of the `adapter_config.json`
   * beside the file, whose keys are part of the general metadata: a change to it re-reads the file.
   */
  sideKey?: string;
  /**
   * PEFT and diffusers units: a digest of the `adapter_config.json` bytes (undefined: none beside the
   * file). The sync executor checks it to write the config byte for byte and only when unchanged.
   */
  configDigest?: string;
  /** Embedded ecosystem hashes (`sshs_model_hash`, ...) that disagree with the file's bytes. */
  hashIssues?: Array<{ key: string; detail: string }>;
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
    why: e.why,
    sideKey: e.sideKey,
    configDigest: e.configDigest,
    hashIssues: e.hashIssues,
    tensors: e.tensors,
    tensorsDigest: e.tensorsDigest,
    metaDigest: e.metaDigest,
    metaKeys: e.metaKeys,
    copyKeys: e.copyKeys,
    syncInfo: e.syncInfo,
  };
}

/** The LoRA name a file's name gives (layouts/fileName.ts: only the seed's `_<6 hex>` copy mark is stripped). */
export const nameFromFile = nameFromFileName;

/** A file in a source folder (sourceFolders.ts: a folder name containing a value, or a glob on the folder's path). */
/** An entry that says nothing yet of the content: where readEntry starts, what the scanner reports for a file it cannot open. */
export function blankEntry(
  rel: string,
  cfg: EngineConfig,
  key: Pick<FileEntry, 'size' | 'mtimeNs' | 'ino'>,
): FileEntry {
  return makeEntry({
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
  });
}

export function isSourcePath(rel: string, cfg: EngineConfig): boolean {
  return matchesSourceFolder(rel, cfg.sourceFolders);
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
  const base = blankEntry(rel, cfg, key);
  // A git-lfs pointer (a clone without `git lfs pull`) in place of the checkpoint: tiny, so read whole.
  if (key.size <= LFS_POINTER_MAX_BYTES) {
    const lfs = await lfsPointerAt(abs);
    if (lfs) {
      const issue = lfsPointerIssue(rel, lfs);
      return makeEntry({ ...base, error: { code: 'LFS_POINTER', message: issue.detail } });
    }
  }
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
    base.format = c.format;
    // Recognition needs only what opening read (names, __metadata__, the pickle): a file that is no
    // LoRA (a 6 GB base model, an optimizer state) is never read past its header.
    const folder = await folderFactsOf(abs, rel);
    const r = recognize(describeCheckpoint(c, rel, folder), base.role!);
    if (r.layout === 'unrecognized') {
      // Not a LoRA, but naming code: an unsafe file (kind 'corrupt' keeps it out of the harmless unrecognized ones).
      return makeEntry({ ...base, kind: base.unsafeGlobals.length ? 'corrupt' : 'unrecognized', why: r.why });
    }
    const fp = await fingerprintCheckpoint(c).catch((e) => {
      if (isFormatError(e)) return e;
      throw e;
    });
    if (isFormatError(fp)) return makeEntry({ ...base, error: { code: fp.code, message: fp.message } });
    const entry = base;
    if (fp.crcFailures.length) {
      entry.error = {
        code: 'CRC_MISMATCH',
        message: `CRC32 mismatch in ${fp.crcFailures.map((f) => f.record).join(', ')}: the bytes changed after the file was written`,
      };
      return makeEntry(entry);
    }
    entry.sideKey = folder.sideKey;
    entry.configDigest = folder.configDigest;
    entry.hashIssues = await hashIssuesOf(c, abs);
    return describeLora(c, fp.tensors, entry, cfg, r, folder.adapterConfigText);
  } finally {
    await c.close();
  }
}

/** The pointer a tiny file holds, if it is a git-lfs pointer. */
async function lfsPointerAt(abs: string) {
  const fh = await open(abs, 'r');
  try {
    const buf = Buffer.alloc(LFS_POINTER_MAX_BYTES + 1);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return parseLfsPointer(buf.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}

/** Files whose folder is their unit: PEFT's `adapter_model.*`, diffusers' `pytorch_lora_weights.*`. */
const FOLDER_UNIT_FILE = /^(adapter_model|pytorch_lora_weights)\.(safetensors|bin)$/;
const ADAPTER_CONFIG = 'adapter_config.json';

/**
 * What the recognizers need of the file's folder. Only folder units need it (the folder listing and
 * adapter_config.json): other files cost no extra I/O. `sideKey` keys the config for the cache.
 */
async function folderFactsOf(
  abs: string,
  rel: string,
): Promise<FolderFacts & { sideKey?: string; configDigest?: string }> {
  const name = rel.slice(rel.lastIndexOf('/') + 1);
  if (!FOLDER_UNIT_FILE.test(name)) return { siblings: [] };
  const dir = dirname(abs);
  const siblings = await readdir(dir).catch(() => [] as string[]);
  if (!siblings.includes(ADAPTER_CONFIG)) return { siblings, sideKey: 'none' };
  try {
    const fh = await open(`${dir}/${ADAPTER_CONFIG}`, 'r');
    try {
      const st = await fh.stat({ bigint: true });
      const sideKey = `${st.size}:${st.mtimeNs}:${st.ino}`;
      if (st.size > BigInt(MAX_CONFIG_BYTES)) return { siblings, sideKey };
      const bytes = await fh.readFile();
      return { siblings, adapterConfigText: bytes.toString('utf8'), sideKey, configDigest: configDigestOf(bytes) };
    } finally {
      await fh.close();
    }
  } catch {
    return { siblings, sideKey: 'none' };
  }
}

/**
 * Embedded ecosystem hashes that disagree with the file. Only safetensors files that embed one are
 * hashed (one extra pass over the file), so the cold scan of other files costs nothing more.
 */
async function hashIssuesOf(c: Checkpoint, abs: string): Promise<FileEntry['hashIssues']> {
  const md = c.format === 'safetensors' ? c.safetensorsMetadata : undefined;
  if (!md || !EMBEDDED_KEYS.some((k) => (md[k] ?? '').trim() !== '')) return undefined;
  const { issues } = await embeddedHashReport(abs);
  return issues.length ? issues.map((i) => ({ key: i.key, detail: i.detail })) : undefined;
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
function describeLora(
  c: Checkpoint,
  fps: TensorFingerprint[],
  entry: FileEntry,
  cfg: EngineConfig,
  r: Recognized,
  adapterConfigText: string | undefined,
): FileEntry {
  const parts = c.format === 'safetensors' ? safetensorsParts(c, fps, cfg, r) : torchParts(c, fps, cfg, r);
  if (adapterConfigText !== undefined) adapterConfigKeys(adapterConfigText, parts);
  // The name came from the layout (a folder, kohya's ss_output_name), not from the file's own name.
  const byLayout =
    r.layout === 'peft' ||
    r.layout === 'diffusers' ||
    (r.layout === 'kohya' && !!c.safetensorsMetadata?.ss_output_name?.trim());
  return loraEntry(entry, parts, r, byLayout);
}

/** A PEFT adapter's `adapter_config.json` is its general metadata: one key per top-level entry. */
function adapterConfigKeys(text: string, parts: LoraParts): void {
  let cfg: unknown;
  try {
    cfg = JSON.parse(text);
  } catch {
    parts.texts.set('adapter_config.json', JSON.stringify(text));
    return;
  }
  if (!cfg || typeof cfg !== 'object' || Array.isArray(cfg)) return;
  for (const [k, v] of Object.entries(cfg)) parts.texts.set(`adapter_config.${k}`, JSON.stringify(v));
}

/** Embedded hashes describe the bytes, not the LoRA: a copy's differ from its source's whenever its header does. */
const HASH_KEYS: ReadonlySet<string> = new Set(EMBEDDED_KEYS);

/**
 * `format: pt` is what `safetensors.torch.save_file` marks a file with, not something about the LoRA:
 * a PEFT adapter saved as `.bin` lacks it and is still in sync.
 */
const SERIALIZATION_KEYS: ReadonlySet<string> = new Set(['format']);

function safetensorsParts(c: Checkpoint, fps: TensorFingerprint[], cfg: EngineConfig, r: Recognized): LoraParts {
  const skip = r.layout === 'seed' ? HASH_KEYS : new Set([...HASH_KEYS, ...SERIALIZATION_KEYS]);
  const md = c.safetensorsMetadata ?? {};
  const loraId = md.id;
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
    else if (!cfg.ignoreKeys.includes(k) && !skip.has(k)) parts.texts.set(k, JSON.stringify(v));
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

function torchParts(c: Checkpoint, fps: TensorFingerprint[], cfg: EngineConfig, r: Recognized): LoraParts {
  // A plain state dict (kohya's save_model_as=pt, PEFT's adapter_model.bin): every tensor, no metadata.
  if (r.layout !== 'seed') return { tensors: loraTensors(fps, ''), texts: new Map(), copyKeys: [], syncInfo: {} };
  const root = c.root!;
  const entries = mappingEntries(root) ?? [];
  const params = getKey(root, 'lora_params');
  const meta = getKey(root, 'metadata');
  const loraId = meta ? strOf(getKey(meta, 'id')) : undefined;
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

function loraEntry(entry: FileEntry, p: LoraParts, r: Recognized, byLayout: boolean): FileEntry {
  const fileName = nameFromFileName(entry.path, entry.role!);
  const metaKeys: Record<string, string> = {};
  for (const [k, text] of p.texts) metaKeys[k] = keyDigestOf(text);
  const seed = r.layout === 'seed';
  // The seed keeps its ids exactly (`metadata.id`, else `name:<file name>`); other layouts are named by
  // the layout (kohya ss_output_name + run, the PEFT/diffusers folder) or, failing that, the file.
  const loraId = seed ? p.loraId || `name:${fileName}` : layoutLoraId(r);
  const idFrom: FileEntry['idFrom'] = seed ? (p.loraId ? 'metadata' : 'filename') : byLayout ? 'layout' : 'filename';
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
    loraId,
    name: seed ? (p.name ?? fileName) : r.name,
    idFrom,
    layout: r.layout,
    unit: r.unit,
    version: r.version,
    session: r.session,
    sideKey: entry.sideKey,
    configDigest: entry.configDigest,
    hashIssues: entry.hashIssues,
    tensors: p.tensors,
    tensorsDigest: tensorsDigestOf(p.tensors),
    metaDigest: metaDigestOf(metaKeys),
    metaKeys,
    copyKeys: p.copyKeys,
    syncInfo: p.syncInfo,
  });
}
