/**
 * Reading one checkpoint file into its entry (fileEntry.ts). Reading a file never throws for bad
 * content: a corrupt or unsafe file is an entry that says so. What it learns of the file's folder,
 * LFS pointer and embedded hashes is in layoutFacts.ts.
 */
import { stat } from 'node:fs/promises';
import { type Checkpoint, openCheckpoint } from '../formats/checkpoint';
import { strayStoragesWhy } from '../formats/torch/torchPickle';
import { hash } from 'node:crypto';
import { fingerprintCheckpoint, DIGEST_ALG, tensorTypedLookup, type TensorFingerprint } from '../formats/fingerprint';
import { isFormatError } from '../formats/errors';
import { type PyNode, getKey, mappingEntries } from '../formats/pickle/nodes';
import { type Typed, typedForm, typedFormJson } from '../formats/pyValue';
import type { EngineConfig } from './config';
import type { Recognized } from '../layouts/types';
import { describeCheckpoint } from '../layouts/describe';
import { recognize } from '../layouts/recognize';
import { layoutLoraId } from '../layouts/runs';
import { nameFromFileName } from '../layouts/fileName';
import { LFS_POINTER_MAX_BYTES } from '../layouts/lfsPointer';
import { EMBEDDED_KEYS } from '../layouts/ecosystemHashes';
import { blankEntry, type EntryKind, type FileEntry, makeEntry, type SyncInfo, type TensorEntry } from './fileEntry';
import { folderFactsOf, hashIssuesOf, lfsPointerError } from './layoutFacts';

// The entry is still imported from here across the engine and the tests, as when it was defined here.
export type { EntryKind, FileEntry, SyncInfo, TensorEntry } from './fileEntry';
export { blankEntry, isSourcePath, makeEntry, msOfNs } from './fileEntry';

/** The LoRA name a file's name gives (layouts/fileName.ts: only the seed's `_<6 hex>` copy mark is stripped). */
export const nameFromFile = nameFromFileName;

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

/**
 * Up to this many characters, a metadata value's canonical text stands for itself in `metaKeys`
 * (marked `=`, which no hex digest starts with): equal exactly when the values are, with no hash. Most
 * of a seed file's values (its id, name, generation, each float) are this short; a scan made nine
 * SHA-256 calls a file for them. Longer texts keep 64 bits of SHA-256, as the cache stays small.
 */
export const INLINE_META_TEXT = 40;
/** What starts an inline value in `metaKeys`. */
export const INLINE_META_MARK = '=';

/** Per metadata key: says "same value or not" between a copy and its source (these values are internal: cache and comparisons). */
export const keyDigestOf = (s: string) =>
  s.length <= INLINE_META_TEXT ? `${INLINE_META_MARK}${s}` : smallDigest(s, 16);

/**
 * Digest of the (key, value) pairs of `metaKeys` in key order (keys are unique: a plain sort of the
 * keys is the order). Each string goes in with its length before it, which makes the text say the
 * pairs unambiguously without JSON's escaping (inline values are JSON texts, full of quotes).
 */
export function metaDigestOf(metaKeys: Record<string, string>): string {
  const keys = Object.keys(metaKeys).sort();
  let text = '';
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i];
    const v = metaKeys[k];
    text += `${k.length}:${k}${v.length}:${v}`;
  }
  return smallDigest(text);
}

function tensorsDigestOf(tensors: TensorEntry[]): string {
  // Sorted by name (a stable sort: equal names keep their order), copied only when not already in order.
  let sorted = tensors;
  for (let i = 1; i < tensors.length; i++) {
    if (tensors[i - 1].name > tensors[i].name) {
      sorted = [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      break;
    }
  }
  return smallDigest(JSON.stringify(sorted.map((t) => [t.name, t.dtype, t.shape, t.digest])));
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
    const error = await lfsPointerError(abs, rel);
    if (error) return makeEntry({ ...base, error });
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
    if (c.strays?.length) {
      // Data the model has no place for: neither compared nor copied, so never called in sync.
      const kind = base.unsafeGlobals.length ? 'corrupt' : 'unrecognized';
      return makeEntry({ ...base, kind, why: strayStoragesWhy(c.strays) });
    }
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
    entry.hashIssues = await hashIssuesOf(c);
    return describeLora(c, fp.tensors, entry, cfg, r, folder.adapterConfigText);
  } finally {
    await c.close();
  }
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
