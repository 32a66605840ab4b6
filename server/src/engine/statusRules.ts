/**
 * Status rules: a pure function of the entries (fingerprints and metadata) of a file, its LoRA's
 * source, and the LoRA's other sources. The README lists these rules in the order they apply.
 */
import { DIGEST_ALG } from '../formats/fingerprint';
import type { FileEntry } from './loraFile';
import { type LoraGroup, primarySource, sourcePick } from './copyMap';
import type { IssueType } from '../protocol/reports';
import { staleVersionMessage, versionLabel } from '../layouts/versions';
import { baseName } from '../layouts/fileName';
import { STATUS_FACTS, STATUSES, type Status } from '../protocol/statusTable';
import { findingTypeOf } from '../formats/safety';
import { tensorChange } from './tensorChange';
import { isUnitConfigKey } from './unitFiles';

export { STATUSES, type Status } from '../protocol/statusTable';

/** The seed's issue shape. */
export interface Issue {
  type: IssueType;
  file: string;
  param?: string;
  detail: string;
}

export interface FileStatus {
  status: Status;
  issues: Issue[];
  /** The source this file was compared with (copies). */
  source?: string;
  /** How many tensors differ, of how many (copies compared with a source). */
  differing?: number;
  /** Tensors either file has (the source's, and those only in the copy). */
  total?: number;
  /** Tensor names only in the source / only in the copy (when any). */
  missing?: number;
  extra?: number;
  /** The sentence to show instead of the status's usual one (a copy equal to an earlier version, a VERSION). */
  note?: string;
}

/** What the copy map knows of a file beyond its group. */
export interface StatusContext {
  /** A copy whose content matched several LoRAs (none chosen): their ids. */
  candidates?: string[];
}

/** Statuses that mean "nothing to do". */
export const SOUND: ReadonlySet<Status> = new Set(STATUSES.filter((s) => STATUS_FACTS[s].sound));

/**
 * A corrupt or unsafe copy is never compared, but it still names its LoRA's sole source, so the user
 * sees what the copy should be.
 */
function namedSource(e: FileEntry, g: LoraGroup | undefined): { source?: string } {
  const sources = g?.sources.filter((s) => s.kind === 'lora');
  return e.role === 'copy' && sources?.length === 1 ? { source: sources[0].path } : {};
}

export function statusOf(e: FileEntry, g: LoraGroup | undefined, ctx: StatusContext = {}): FileStatus {
  const s = baseStatus(e, g, ctx);
  // Embedded hashes that disagree with the bytes: a warning on any status (the file itself may be fine).
  if (e.hashIssues?.length)
    s.issues = [
      ...s.issues,
      ...e.hashIssues.map((h) => ({
        type: 'EMBEDDED_HASH_MISMATCH' as const,
        file: e.path,
        param: h.key,
        detail: h.detail,
      })),
    ];
  return s;
}

function baseStatus(e: FileEntry, g: LoraGroup | undefined, ctx: StatusContext): FileStatus {
  // 1. Would run code on torch.load: outranks everything, a read error included (kept as an issue).
  if (e.unsafeGlobals.length) return { status: 'UNSAFE', issues: unsafeIssues(e), ...namedSource(e, g) };
  // 2. Unreadable: nothing else can be said.
  if (e.kind === 'corrupt') {
    const code = e.error?.code;
    const type: IssueType =
      code === 'CRC_MISMATCH' || code === 'TRAILING_DATA' || code === 'LFS_POINTER' ? code : 'LOAD_ERROR';
    return {
      status: 'CORRUPT',
      issues: [{ type, file: e.path, detail: e.error?.message ?? 'cannot be read' }],
      ...namedSource(e, g),
    };
  }
  if (!g) return { status: 'ORPHAN', issues: [{ type: 'NO_SOURCE', file: e.path, detail: 'not part of any LoRA' }] };
  const sources = g.sources.filter((s) => s.kind === 'lora');
  // 3. Sources: one per LoRA; several ordered by training progress are its versions.
  if (e.role === 'source') {
    if (sources.length > 1) {
      const pick = sourcePick(g);
      if (pick.kind === 'picked' && pick.source) {
        if (pick.source === e) return { status: 'SOURCE', issues: [] };
        const was = versionLabel(e.version) ?? 'an earlier version';
        const now = versionLabel(pick.source.version);
        return {
          status: 'VERSION',
          issues: [],
          source: pick.source.path,
          note: `${was}: an earlier version of ${pick.source.path}${now ? ` (the source, at ${now})` : ''}`,
        };
      }
      const others = sources.filter((s) => s !== e).map((s) => s.path);
      const why = pick.kind === 'unordered' && sources.some((s) => s.version) ? ` (${pick.why})` : '';
      return {
        status: 'DUPLICATE_SOURCE',
        issues: [
          {
            type: 'DUPLICATE_SOURCE',
            file: e.path,
            detail: `${others.join(', ')} also claim${others.length === 1 ? 's' : ''} to be the source of ${g.id}${why}`,
          },
        ],
      };
    }
    return { status: 'SOURCE', issues: [] };
  }
  // 4. Copies need a source.
  const src = primarySource(g);
  if (!src) {
    const cands = ctx.candidates;
    // A source that is there but cannot be read is named: "no source" would send the user looking.
    const broken = g.broken.filter((b) => b.role === 'source').map((b) => b.path);
    const detail = cands?.length
      ? `its tensors equal sources of ${cands.length} LoRAs (${cands.join(', ')}); which one it belongs to is not known`
      : broken.length
        ? `no readable source for ${g.name} (${g.id}): ${broken.join(', ')} cannot be read`
        : `no source for ${g.name} (${g.id}) in a source folder`;
    return { status: 'ORPHAN', issues: [{ type: 'NO_SOURCE', file: e.path, detail }] };
  }
  const s = compareWithSource(e, src);
  return s.status === 'IN_SYNC' || s.status === 'METADATA_DRIFT' || e.syncInfo.engine ? s : versionMatch(e, s, src, g);
}

/**
 * A copy whose tensors equal an earlier version of its source is STALE (the source moved on): as good
 * as a sync record for telling STALE from DIVERGED.
 */
function versionMatch(copy: FileEntry, s: FileStatus, src: FileEntry, g: LoraGroup): FileStatus {
  if (g.sources.length < 2) return s;
  const v = g.sources.find((f) => f !== src && f.kind === 'lora' && f.tensorsDigest === copy.tensorsDigest);
  if (!v) return s;
  const fileOf = (f: FileEntry) => (f.unit?.kind === 'folder' ? f.unit.path : baseName(f.path));
  return {
    ...s,
    status: 'STALE',
    note: staleVersionMessage({ file: fileOf(v), progress: v.version }, { file: fileOf(src), progress: src.version }),
  };
}

function unsafeIssues(e: FileEntry): Issue[] {
  const issues: Issue[] = e.unsafeGlobals.map((gl) => ({
    type: findingTypeOf(gl),
    file: e.path,
    detail:
      findingTypeOf(gl) === 'NAMESPACE_TAMPERING'
        ? `${gl}: the pickle rewrites what a global imported, so an allowed-looking name may run anything`
        : `torch.load would import and may call ${gl}`,
  }));
  if (e.kind === 'corrupt' && e.error && e.error.code !== 'NOT_A_CHECKPOINT')
    issues.push({ type: 'LOAD_ERROR', file: e.path, detail: `it also cannot be read: ${e.error.message}` });
  return issues;
}

/** Names the same, in the same order, each once: then tensor i of one is tensor i of the other. */
function alignedUnique(a: FileEntry['tensors'], b: FileEntry['tensors']): boolean {
  if (a === b) return uniqueNames(a);
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i].name !== b[i].name) return false;
  return uniqueNames(a);
}

function uniqueNames(ts: FileEntry['tensors']): boolean {
  if (ts.length > 16) return new Set(ts.map((t) => t.name)).size === ts.length;
  for (let i = 1; i < ts.length; i++) for (let j = 0; j < i; j++) if (ts[i].name === ts[j].name) return false;
  return true;
}

/** A copy against its source. */
export function compareWithSource(copy: FileEntry, src: FileEntry): FileStatus {
  // Most copies list the source's tensors in its order: compare them pairwise, no lookup maps.
  if (
    alignedUnique(src.tensors, copy.tensors) &&
    src.tensors.every((t, i) => tensorChange(copy.tensors[i], t) === 'equal')
  ) {
    const total = src.tensors.length;
    const drift = metadataDifferences(copy, src);
    return drift.length
      ? { status: 'METADATA_DRIFT', issues: drift, source: src.path, differing: 0, total }
      : { status: 'IN_SYNC', issues: [], source: src.path, differing: 0, total };
  }
  const issues: Issue[] = [];
  const srcBy = new Map(src.tensors.map((t) => [t.name, t]));
  const copyBy = new Map(copy.tensors.map((t) => [t.name, t]));
  let differing = 0;
  let missing = 0;
  let extra = 0;
  let shape = 0;
  let dtype = 0;
  for (const t of src.tensors) {
    const c = copyBy.get(t.name);
    if (!c) {
      missing++;
      differing++;
      issues.push({
        type: 'PARAM_MISSING',
        file: copy.path,
        param: t.name,
        detail: `${t.name} is in the source but not in this copy`,
      });
      continue;
    }
    const change = tensorChange(c, t);
    if (change === 'shape') {
      shape++;
      differing++;
      issues.push({
        type: 'SHAPE_MISMATCH',
        file: copy.path,
        param: t.name,
        detail: `${t.name}: shape [${c.shape.join(', ')}], source [${t.shape.join(', ')}]`,
      });
    } else if (change === 'dtype') {
      dtype++;
      differing++;
      issues.push({
        type: 'DTYPE_MISMATCH',
        file: copy.path,
        param: t.name,
        detail: `${t.name}: ${c.dtype}, source ${t.dtype}`,
      });
    } else if (change === 'differs') {
      differing++;
      issues.push({
        type: 'PARAM_MISMATCH',
        file: copy.path,
        param: t.name,
        detail: `${t.name}: values differ from the source`,
      });
    }
  }
  for (const t of copy.tensors) {
    if (!srcBy.has(t.name)) {
      extra++;
      differing++;
      issues.push({
        type: 'PARAM_EXTRA',
        file: copy.path,
        param: t.name,
        detail: `${t.name} is in this copy but not in the source`,
      });
    }
  }
  // Every tensor either file has: a source retrained with other names must not read "16 of 8".
  const total = src.tensors.length + extra;
  const base = { source: src.path, differing, total, ...(missing + extra ? { missing, extra } : {}) };
  if (differing === 0) {
    const drift = metadataDifferences(copy, src);
    return drift.length
      ? { status: 'METADATA_DRIFT', issues: drift, ...base }
      : { status: 'IN_SYNC', issues: [], ...base };
  }
  // The tensors differ. Did the source move on (STALE), or did the copy change on its own?
  const eng = copy.syncInfo.engine;
  if (eng && eng.alg === DIGEST_ALG) {
    // Our own record of what we wrote outranks match numbers (a trainer's numbering may restart).
    if (eng.tensors === copy.tensorsDigest) return { status: 'STALE', issues, ...base };
    issues.unshift({
      type: 'CHANGED_SINCE_SYNC',
      file: copy.path,
      detail: 'the tensors changed since LoRA Sync last synced this copy',
    });
    return { status: structural(missing + extra, shape, dtype) ?? 'DIVERGED', issues, ...base };
  }
  const cm = copy.syncInfo.lastSyncMatch;
  const sm = src.syncInfo.lastSyncMatch;
  if (cm !== undefined && sm !== undefined && cm < sm) return { status: 'STALE', issues, ...base };
  return { status: structural(missing + extra, shape, dtype) ?? 'DIVERGED', issues, ...base };
}

function structural(
  count: number,
  shape: number,
  dtype: number,
): 'PARAM_COUNT_MISMATCH' | 'SHAPE_MISMATCH' | 'DTYPE_MISMATCH' | undefined {
  if (count) return 'PARAM_COUNT_MISMATCH';
  if (shape) return 'SHAPE_MISMATCH';
  if (dtype) return 'DTYPE_MISMATCH';
  return undefined;
}

function metadataDifferences(copy: FileEntry, src: FileEntry): Issue[] {
  if (copy.metaDigest === src.metaDigest) return [];
  const out: Issue[] = [];
  const keys = new Set([...Object.keys(src.metaKeys), ...Object.keys(copy.metaKeys)]);
  // A source without adapter_config.json: the copy's config is its own (a sync leaves it,
  // unitConfigSync.ts), so it is no drift, or every sync would write the copy again.
  const ownConfig = src.configDigest === undefined;
  for (const k of [...keys].sort()) {
    if (ownConfig && isUnitConfigKey(k)) continue;
    const a = src.metaKeys[k];
    const b = copy.metaKeys[k];
    if (a === b) continue;
    const detail =
      a === undefined
        ? `${k} is only in this copy`
        : b === undefined
          ? `${k} is missing from this copy`
          : `${k} differs from the source`;
    out.push({ type: 'METADATA_MISMATCH', file: copy.path, param: k, detail });
  }
  return out;
}

/** How a copy's tensor names differ from its source's, from its status's counts. */
export function tensorNamesText(s: FileStatus): string {
  return `${s.missing ?? 0} only in the source, ${s.extra ?? 0} only in this copy`;
}

/** One line a user acts on, e.g. "stale: 3 of 12 tensors differ from ⭐_AKTIF_EN_IYILER/LoRA_A.pt, last synced at match 45, source at match 50". */
export function describeStatus(e: FileEntry, s: FileStatus, src?: FileEntry): string {
  const matches = () => {
    const parts: string[] = [];
    if (e.syncInfo.lastSyncMatch !== undefined) parts.push(`last synced at match ${e.syncInfo.lastSyncMatch}`);
    if (src?.syncInfo.lastSyncMatch !== undefined) parts.push(`source at match ${src.syncInfo.lastSyncMatch}`);
    return parts.length ? `, ${parts.join(', ')}` : '';
  };
  if (s.note) return s.note;
  const names = s.missing || s.extra ? ` (${tensorNamesText(s)})` : '';
  const diff = s.total !== undefined ? `${s.differing} of ${s.total} tensors differ from ${s.source}${names}` : '';
  switch (s.status) {
    case 'SOURCE':
      return 'source';
    case 'VERSION':
      return `an earlier version of ${s.source ?? 'the source'}`;
    case 'IN_SYNC':
      return `in sync with ${s.source}`;
    case 'STALE':
      return `stale: ${diff}${matches()}`;
    case 'DIVERGED': {
      // Without a record or a match number nothing says the copy was ever synced: say so, not "since its last sync".
      const i = e.syncInfo;
      const synced =
        s.issues.some((x) => x.type === 'CHANGED_SINCE_SYNC') ||
        i.lastSyncMatch !== undefined ||
        i.lastSyncTime !== undefined ||
        i.engine !== undefined;
      const how = synced
        ? 'the copy changed on its own since its last sync'
        : 'no sync record or match number says the copy was ever synced from it, so it may hold work of its own';
      return `diverged: ${diff}, and ${how}${matches()}; a sync would overwrite that work (force to overwrite, a backup is kept)`;
    }
    case 'METADATA_DRIFT':
      return `metadata drift: tensors equal ${s.source}; ${s.issues.map((i) => i.param).join(', ')} differ`;
    case 'PARAM_COUNT_MISMATCH':
      return `parameter count differs from ${s.source}: ${s.issues
        .filter((i) => i.type === 'PARAM_MISSING' || i.type === 'PARAM_EXTRA')
        .map((i) => i.detail)
        .join('; ')}`;
    case 'SHAPE_MISMATCH':
      return `shape differs from ${s.source}: ${s.issues
        .filter((i) => i.type === 'SHAPE_MISMATCH')
        .map((i) => i.detail)
        .join('; ')}`;
    case 'DTYPE_MISMATCH':
      return `dtype differs from ${s.source}: ${s.issues
        .filter((i) => i.type === 'DTYPE_MISMATCH')
        .map((i) => i.detail)
        .join('; ')}`;
    case 'CORRUPT':
      return `corrupt: ${s.issues[0]?.detail ?? 'cannot be read'}`;
    case 'UNSAFE':
      return `unsafe: torch.load would run code (${e.unsafeGlobals.join(', ')}); never loaded, never synced`;
    case 'ORPHAN':
      return `orphan: ${s.issues[0]?.detail ?? 'no source'}`;
    case 'DUPLICATE_SOURCE':
      return `duplicate source: ${s.issues[0]?.detail ?? ''}`;
  }
}
