/**
 * The inspector's view of one checkpoint file (protocol/inspect.ts): identity, role, status in
 * words, metadata as a display tree (the copy's own keys marked), the tensor table and, for a copy,
 * the difference from its source tensor by tensor (engine/tensorDiff.ts), and the `fitness_history`
 * as numbers. No tensor bytes are in it; reading them is bounded by the diff's budget, everything
 * else comes from the index and the file's headers and pickle.
 */
import { stat } from 'node:fs/promises';
import { type Checkpoint, openCheckpoint, type TensorInfo } from '../../formats/checkpoint';
import { DIGEST_ALG } from '../../formats/fingerprint';
import { isFormatError } from '../../formats/errors';
import { getKey, mappingEntries, type PyNode } from '../../formats/pickle/nodes';
import { interpret } from '../../formats/pyValue';
import { itemSize, numelOf, type TorchDtype } from '../../formats/dtypes';
import type { EngineConfig } from '../../engine/config';
import { type FileEntry, readEntry } from '../../engine/loraFile';
import { primarySource } from '../../engine/copyMap';
import { cachedFileHashes } from '../../engine/fileHashes';
import type { Issue } from '../../engine/statusRules';
import { fileKey, type FileReport, relPath, type Workspace } from '../../engine/workspace';
import { DEFAULT_BUDGET, type DiffOptions, diffTensors, loraTensorsByName } from '../../engine/tensorDiff';
import type {
  DiffInfo,
  Fitness,
  InspectHashes,
  InspectModel,
  InspectRole,
  MetaNode,
  TensorDiffKind,
} from '../../protocol/inspect';
import type { ReportStatus } from '../../protocol/statusTable';
import { issueToWire, tensorDiffToWire } from '../wire';
import { metaTreeOf, metaTreeOfStrings } from './metaTree';

export const MAX_ROWS = 5000;
export const MAX_FITNESS = 5000;

export interface InspectInput {
  abs: string;
  rel: string;
  cfg: EngineConfig;
  /** The index's entry (or one read now for an untracked file). */
  entry: FileEntry;
  /** The workspace's report of the file; undefined when it is not tracked. */
  report?: FileReport;
  /** The source a copy is compared with. */
  source?: { abs: string; entry: FileEntry; status: ReportStatus | null };
  changedOnDisk?: boolean;
  diff?: DiffOptions;
}

function roleOf(e: FileEntry): InspectRole {
  if (e.kind === 'corrupt') return 'unreadable';
  if (e.kind === 'unrecognized') return 'not-lora';
  return e.role ?? 'copy';
}

export async function buildInspectModel(input: InspectInput): Promise<InspectModel> {
  const { entry: e, report, cfg } = input;
  const role = roleOf(e);
  const model: InspectModel = {
    path: input.rel,
    format: e.format ?? null,
    size: e.size,
    mtime: new Date(e.mtimeMs).toISOString(),
    tracked: !!report,
    changedOnDisk: !!input.changedOnDisk,
    identity: { id: report?.lora_id ?? e.loraId ?? null, name: e.name ?? null, from: e.idFrom ?? null },
    ...(report?.identified_by ? { identifiedBy: report.identified_by } : {}),
    ...(e.layout ? { layout: e.layout } : {}),
    ...(report?.version ? { version: report.version } : {}),
    role,
    place: e.role ?? 'copy',
    status: report?.status ?? null,
    message: report?.message ?? untrackedMessage(e),
    issues: (report?.issues ?? []).map(issueToWire),
    source:
      input.source && input.source.entry.path !== e.path
        ? { path: input.source.entry.path, abs: input.source.abs, status: input.source.status }
        : null,
    syncInfo:
      e.kind === 'lora' && (e.syncInfo.lastSyncMatch !== undefined || e.syncInfo.lastSyncTime || e.syncInfo.engine)
        ? {
            lastSyncMatch: e.syncInfo.lastSyncMatch,
            lastSyncTime: e.syncInfo.lastSyncTime,
            reason: e.syncInfo.reason,
            byLoraSync: !!e.syncInfo.engine,
          }
        : null,
    error: e.error ?? null,
    safety: { safe: e.unsafeGlobals.length === 0, unsafe: [] },
    digestAlg: DIGEST_ALG,
    tensors: [],
    tensorsLeftOut: 0,
    metadata: null,
    fitness: null,
    diff: null,
    copyKeys: cfg.copyKeys,
    ignoreKeys: cfg.ignoreKeys,
  };
  let c: Checkpoint;
  try {
    c = await openCheckpoint(input.abs);
  } catch (err) {
    const code = isFormatError(err) ? err.code : ((err as NodeJS.ErrnoException).code ?? 'IO_ERROR');
    // Findings of the safety scan survive a file that cannot be read (they outrank the error).
    if (isFormatError(err) && err.unsafe?.length)
      model.safety = { safe: false, unsafe: err.unsafe.map((u) => ({ global: u.global, detail: u.detail })) };
    // The index's account (e.g. a CRC failure found while fingerprinting) is kept when it has one.
    if (!model.error && code !== 'NOT_A_CHECKPOINT') model.error = { code, message: (err as Error).message };
    return model;
  }
  try {
    model.format = c.format;
    model.safety = {
      safe: c.unsafe.length === 0,
      unsafe: c.unsafe.map((u) => ({ global: u.global, detail: u.detail })),
    };
    // The ecosystem's hashes (one pass over the file): LoRA files only, never a multi-GB base model.
    if (e.kind === 'lora') model.hashes = await inspectHashes(input.abs);
    fillTensors(model, c, e);
    model.metadata = metadataTree(c, e, report?.issues ?? [], cfg);
    model.fitness = fitnessOf(c);
    if (role === 'copy' && input.source && input.source.entry.kind === 'lora' && input.source.entry.path !== e.path) {
      await fillDiff(model, c, e, input.source, input.diff ?? {}, !!input.changedOnDisk);
    }
  } finally {
    await c.close();
  }
  return model;
}

function untrackedMessage(e: FileEntry): string {
  const what =
    e.kind === 'corrupt'
      ? `cannot be read: ${e.error?.message ?? 'unknown error'}`
      : e.kind === 'unrecognized'
        ? 'not a LoRA checkpoint'
        : 'a LoRA checkpoint';
  return `not tracked (outside the include/exclude globs, or in a hidden folder): ${what}; shown for inspection only`;
}

/** The table: a LoRA's tensors by their index names with the index's digests; other files' tensors by path. */
function fillTensors(model: InspectModel, c: Checkpoint, e: FileEntry): void {
  const infos: Array<[string, TensorInfo]> =
    e.kind === 'unrecognized' ? c.tensors.map((t) => [t.path, t]) : [...loraTensorsByName(c)];
  const digests = new Map(e.tensors.map((t) => [t.name, t]));
  for (const [name, t] of infos.slice(0, MAX_ROWS)) {
    const known = digests.get(name);
    model.tensors.push({
      name,
      dtype: t.dtype,
      shape: t.shape,
      numel: numelOf(t.shape),
      bytes: t.byteLength,
      ...(known && known.dtype === t.dtype && known.shape.join() === t.shape.join() ? { digest: known.digest } : {}),
      ...(t.parameter ? { parameter: true } : {}),
      ...(t.contiguous ? {} : { view: true }),
    });
  }
  model.tensorsLeftOut = Math.max(0, infos.length - MAX_ROWS);
}

async function fillDiff(
  model: InspectModel,
  c: Checkpoint,
  e: FileEntry,
  source: NonNullable<InspectInput['source']>,
  opts: DiffOptions,
  changed: boolean,
): Promise<void> {
  const counts: Record<TensorDiffKind, number> = { equal: 0, differs: 0, shape: 0, dtype: 0, missing: 0, extra: 0 };
  const info: DiffInfo = {
    against: source.entry.path,
    counts,
    bytesRead: 0,
    notCompared: 0,
    budgetBytes: opts.unlimited ? null : (opts.budgetBytes ?? DEFAULT_BUDGET),
  };
  model.diff = info;
  // Values are only compared while both files are the ones the index read (digests and bytes agree).
  const srcKey = await fileKey(source.abs);
  const srcChanged =
    !srcKey ||
    srcKey.size !== source.entry.size ||
    srcKey.mtimeNs !== source.entry.mtimeNs ||
    srcKey.ino !== source.entry.ino;
  let src: Checkpoint | undefined;
  if (changed || srcChanged)
    info.note = `${changed ? 'this file' : 'the source'} changed since LoRA Sync last read it; values are compared once it has settled`;
  else {
    try {
      src = await openCheckpoint(source.abs);
    } catch (err) {
      info.note = `the source cannot be read: ${(err as Error).message}`;
    }
  }
  try {
    const budget = src ? opts : { ...opts, unlimited: false, budgetBytes: 0 };
    const res = await diffTensors({ c, tensors: e.tensors }, { c: src ?? c, tensors: source.entry.tensors }, budget);
    info.bytesRead = res.bytesRead;
    info.notCompared = res.notCompared;
    const rows = new Map(model.tensors.map((r) => [r.name, r]));
    for (const found of res.tensors) {
      counts[found.kind]++;
      const d = tensorDiffToWire(!src && found.kind === 'differs' ? { ...found, note: info.note } : found);
      const row = rows.get(d.name);
      if (row) row.diff = d;
      else if (d.kind === 'missing' && d.source && model.tensors.length < MAX_ROWS) {
        const numel = numelOf(d.source.shape);
        model.tensors.push({
          name: d.name,
          dtype: d.source.dtype,
          shape: d.source.shape,
          numel,
          bytes: numel * itemSize(d.source.dtype as TorchDtype),
          absent: true,
          diff: d,
        });
      }
    }
  } finally {
    await src?.close();
  }
}

/** The object's tree; the metadata's keys marked (copy keys, ignored keys, keys that differ from the source). */
function metadataTree(c: Checkpoint, e: FileEntry, issues: Issue[], cfg: EngineConfig): MetaNode | null {
  const differs = new Set(issues.filter((i) => i.type === 'METADATA_MISMATCH' && i.param).map((i) => i.param!));
  const mark = (node: MetaNode, param: string, ownKeys: boolean) => {
    if (node.key === undefined) return;
    if (ownKeys && cfg.copyKeys.includes(node.key)) node.mark = 'copy';
    else if (ownKeys && cfg.ignoreKeys.includes(node.key)) node.mark = 'ignored';
    else if (differs.has(param)) node.mark = 'differs';
  };
  if (c.format === 'safetensors') {
    if (!c.safetensorsMetadata) return null;
    const tree = metaTreeOfStrings(c.safetensorsMetadata);
    for (const n of tree.children ?? []) mark(n, n.key!, true);
    return tree;
  }
  if (!c.root) return null;
  const byNode = new Map<PyNode, { type: 'tensor' | 'Parameter'; value: string }>();
  const digests = new Map(e.tensors.map((t) => [t.name, t.digest]));
  const names = new Map([...loraTensorsByName(c)].map(([n, t]) => [t, n]));
  for (const t of c.tensors) {
    if (!t.node) continue;
    const digest = digests.get(names.get(t) ?? '');
    byNode.set(t.wrapper ?? t.node, {
      type: t.parameter ? 'Parameter' : 'tensor',
      value: `${t.dtype} [${t.shape.join(', ')}]${digest ? ` ${digest.slice(0, 16)}` : ''}`,
    });
  }
  const lora = e.kind === 'lora';
  const tree = metaTreeOf(
    c.root,
    (n) => byNode.get(n),
    (key, v) => {
      if (key !== 'lora_params' || !lora) return undefined;
      const n = mappingEntries(v)?.length;
      return n === undefined ? 'the LoRA tensors (see Tensors)' : `${n} tensor${n === 1 ? '' : 's'} (see Tensors)`;
    },
  );
  for (const top of tree.children ?? []) {
    if (top.key === 'metadata') for (const n of top.children ?? []) mark(n, `metadata.${n.key}`, true);
    else mark(top, top.key ?? '', false);
  }
  return tree;
}

/** `fitness_history` from `metadata` (the seed's place), or the object's top level. */
function fitnessOf(c: Checkpoint): Fitness | null {
  if (c.format === 'safetensors') {
    const raw = c.safetensorsMetadata?.fitness_history;
    if (raw === undefined) return null;
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      return null;
    }
    if (!Array.isArray(parsed)) return null;
    const values = parsed.map((v) => (typeof v === 'number' && Number.isFinite(v) ? v : null));
    return { path: 'fitness_history', values: values.slice(-MAX_FITNESS), total: values.length };
  }
  if (!c.root || !mappingEntries(c.root)) return null;
  const meta = getKey(c.root, 'metadata');
  const inMeta = meta ? getKey(meta, 'fitness_history') : undefined;
  const node = inMeta ?? getKey(c.root, 'fitness_history');
  if (!node) return null;
  const items = node.kind === 'list' || node.kind === 'tuple' ? node.items : undefined;
  if (!items) return null;
  const values = items.map(numberOf);
  return {
    path: inMeta ? 'metadata.fitness_history' : 'fitness_history',
    values: values.slice(-MAX_FITNESS),
    total: values.length,
  };
}

function numberOf(n: PyNode): number | null {
  let v: number | undefined;
  if (n.kind === 'float') v = n.value;
  else if (n.kind === 'int') v = Number(n.value);
  else if (n.kind === 'bool') v = n.value ? 1 : 0;
  else {
    const i = interpret(n);
    if (i?.kind === 'numpy_scalar') {
      const dv = new DataView(i.raw.buffer, i.raw.byteOffset, i.raw.byteLength);
      if (i.dtype === 'float64' && i.raw.length === 8) v = dv.getFloat64(0, true);
      else if (i.dtype === 'float32' && i.raw.length === 4) v = dv.getFloat32(0, true);
      else if (i.dtype === 'int64' && i.raw.length === 8) v = Number(dv.getBigInt64(0, true));
      else if (i.dtype === 'int32' && i.raw.length === 4) v = dv.getInt32(0, true);
    }
  }
  return v !== undefined && Number.isFinite(v) ? v : null;
}

export class InspectError extends Error {}

/**
 * One file of a workspace: its entry and report from the live index (never re-read here, so
 * inspecting has no side effect on statuses), or read now when the index does not track it.
 */
export async function inspectWorkspaceFile(ws: Workspace, abs: string, diff?: DiffOptions): Promise<InspectModel> {
  const key = await fileKey(abs);
  if (!key) {
    const st = await stat(abs).catch(() => undefined);
    throw new InspectError(st ? `${abs} is not a regular file (links are not followed)` : `${abs} does not exist`);
  }
  const rel = relPath(ws.root, abs);
  const indexed = ws.entryAt(abs);
  const entry = indexed ?? (await readEntry(abs, rel, ws.cfg, key));
  const report = indexed ? ws.fileReport(indexed) : undefined;
  const changedOnDisk =
    !!indexed && (indexed.size !== key.size || indexed.mtimeNs !== key.mtimeNs || indexed.ino !== key.ino);
  let source: InspectInput['source'];
  if (entry.kind !== 'unrecognized' && entry.role === 'copy') {
    // The source the status rules compared it with, else the LoRA's primary source (an unsafe,
    // unreadable or untracked copy: still worth opening, and for the readable ones comparing).
    const compared = indexed ? ws.status(rel)?.source : undefined;
    const id = report?.lora_id ?? entry.loraId;
    const g = id ? ws.copyMap().loras.get(id) : undefined;
    const srcEntry = compared ? ws.entry(compared) : g ? primarySource(g) : undefined;
    if (srcEntry) source = { abs: ws.abs(srcEntry.path), entry: srcEntry, status: ws.fileReport(srcEntry).status };
  }
  return buildInspectModel({ abs, rel, cfg: ws.cfg, entry, report, source, changedOnDisk, diff });
}

/** The file's hashes, or nothing when it changed or vanished meanwhile (the rest of the model still stands). */
function inspectHashes(abs: string): Promise<InspectHashes | undefined> {
  return cachedFileHashes(abs).catch(() => undefined);
}
