/**
 * The sync planner: pure. From the copy map and the statuses it decides, per copy, what a sync
 * will do and why. Executing is the executor's job; `sync --dry-run` prints this plan.
 */
import { type CopyMap, type LoraGroup, primarySource, sourcePick } from './copyMap';
import type { FileEntry } from './loraFile';
import type { FileStatus, Status } from './statusRules';
import { STATUS_FACTS } from '../protocol/statusTable';
import { inTrainerCheckpoint, isUnitConfigKey } from './unitFiles';

export type Action = 'write' | 'force' | 'skip' | 'refuse';

export interface PlannedCopy {
  path: string;
  status: Status;
  action: Action;
  /** Why: for skip/refuse the reason it is not written; for force, what will be lost to the backup. */
  why: string;
}

export interface PlannedLora {
  id: string;
  name: string;
  source?: string;
  /** Set when nothing of this LoRA can be synced (no source, unsafe or corrupt source, duplicates). */
  blocked?: string;
  copies: PlannedCopy[];
}

export interface PlanOptions {
  /** LoRA ids to sync; undefined = all. */
  loras?: string[];
  force?: boolean;
  /** Only these copies (relative paths); the LoRAs' other copies are left out of the plan. */
  copies?: string[];
}

export function planSync(map: CopyMap, statusOf: (e: FileEntry) => FileStatus, opts: PlanOptions = {}): PlannedLora[] {
  const out: PlannedLora[] = [];
  for (const g of map.loras.values()) {
    if (opts.loras && !opts.loras.includes(g.id)) continue;
    const l = planLora(g, statusOf, !!opts.force);
    if (opts.copies) {
      l.copies = l.copies.filter((c) => opts.copies!.includes(c.path));
      if (!l.copies.length) continue;
    }
    out.push(l);
  }
  return out;
}

function planLora(g: LoraGroup, statusOf: (e: FileEntry) => FileStatus, force: boolean): PlannedLora {
  const src = primarySource(g);
  const sources = g.sources.filter((s) => s.kind === 'lora');
  let blocked: string | undefined;
  // An unsafe source outranks an unreadable one (a pickle may run its payload and then break).
  const unsafeSource = g.broken.find((b) => b.role === 'source' && b.unsafeGlobals.length);
  if (!src && unsafeSource)
    blocked = `its source ${unsafeSource.path} is unsafe (${unsafeSource.unsafeGlobals.join(', ')}): it would run code on torch.load and is never propagated`;
  else if (!src)
    blocked = g.sources.length
      ? `its source ${g.sources[0].path} cannot be read`
      : 'it has no source in a source folder';
  else if (sources.length > 1 && sourcePick(g).kind === 'unordered')
    // Versions ordered by training progress are no conflict: the newest is the source.
    blocked = `${sources.length} sources claim this id (${sources.map((s) => s.path).join(', ')}): keep one`;
  else if (src.unsafeGlobals.length)
    blocked = `its source ${src.path} is unsafe (${src.unsafeGlobals.join(', ')}): it would run code on torch.load and is never propagated`;
  const copies: PlannedCopy[] = [];
  for (const c of [...g.copies, ...g.broken.filter((b) => b.role === 'copy')]) {
    const st = statusOf(c).status;
    copies.push(planCopy(c, st, src, blocked, force));
  }
  return { id: g.id, name: g.name, source: src?.path, blocked, copies };
}

/**
 * The copy's general metadata keys its source lacks (`metadata.notes`, a top-level key): a sync
 * writes the source's general metadata, so they are dropped. Copy keys (cfg.copyKeys) are not among
 * them: they are kept. The executor keeps the old copy as a backup when there are any.
 */
export function keysOnlyInCopy(copy: FileEntry, src: FileEntry): string[] {
  // A source without adapter_config.json leaves the copy's as it is (unitConfigSync.ts): nothing of it is lost.
  const configKept = src.configDigest === undefined;
  return Object.keys(copy.metaKeys).filter(
    (k) => !Object.hasOwn(src.metaKeys, k) && !(configKept && isUnitConfigKey(k)),
  );
}

/**
 * keysOnlyInCopy in words, as the plan says it (`done` false) or the result (true). An
 * adapter_config.json that is not JSON stands as one key, its whole text (loraFile.ts).
 */
export function droppedKeysText(keys: string[], done: boolean): string {
  const others = keys.filter((k) => k !== 'adapter_config.json');
  const parts: string[] = [];
  if (others.length)
    parts.push(
      `${done ? 'dropped' : 'drops'} ${others.join(', ')} (only this copy had ${others.length === 1 ? 'it' : 'them'}, not a copy key)`,
    );
  if (others.length < keys.length)
    parts.push(
      `${done ? 'replaced' : 'replaces'} its adapter_config.json, which ${done ? 'was' : 'is'} not valid JSON`,
    );
  return parts.join(' and ');
}

/** What a write adds to its why when it drops keys only the copy has (a forced one says the backup already). */
function dropNote(c: FileEntry, src: FileEntry | undefined, forced = false): string {
  const only = src && c.kind === 'lora' ? keysOnlyInCopy(c, src) : [];
  return only.length ? `; ${droppedKeysText(only, false)}${forced ? '' : ': a backup is kept'}` : '';
}

function planCopy(
  c: FileEntry,
  st: Status,
  src: FileEntry | undefined,
  blocked: string | undefined,
  force: boolean,
): PlannedCopy {
  const base = { path: c.path, status: st };
  if (st === 'IN_SYNC') return { ...base, action: 'skip', why: 'already in sync' };
  if (st === 'CORRUPT')
    return {
      ...base,
      action: 'refuse',
      why: 'the copy cannot be read, so its own keys cannot be kept: restore or delete it',
    };
  if (st === 'UNSAFE')
    return {
      ...base,
      action: 'refuse',
      why: 'the copy holds code that torch.load would run: inspect it, never overwrite it blindly',
    };
  if (st === 'ORPHAN') return { ...base, action: 'refuse', why: 'no source to sync from' };
  if (blocked) return { ...base, action: 'refuse', why: `the LoRA is blocked: ${blocked}` };
  // A Trainer's checkpoint-<step>/ folder is a training version (with its optimizer and RNG state): never a target.
  if (inTrainerCheckpoint(c.path))
    return {
      ...base,
      action: 'refuse',
      why: 'it is inside a Trainer checkpoint folder (a training version): never written',
    };
  const formatRefusal = src ? crossFormatRefusal(c, src) : undefined;
  if (formatRefusal) return { ...base, action: 'refuse', why: formatRefusal };
  const rule = STATUS_FACTS[st].sync;
  if (rule === 'write')
    return {
      ...base,
      action: 'write',
      why: `${st === 'STALE' ? 'the source moved on' : 'general metadata differs from the source'}${dropNote(c, src)}`,
    };
  if (rule === 'force') {
    return force
      ? { ...base, action: 'force', why: `forced: the old copy (${st}) is kept as a backup${dropNote(c, src, true)}` }
      : {
          ...base,
          action: 'refuse',
          why: 'overwriting would lose what changed in the copy; use --force (a backup is kept)',
        };
  }
  return { ...base, action: 'skip', why: st };
}

const isTorch = (f: string | undefined) => f === 'torch-zip' || f === 'torch-legacy';

/**
 * Why a copy of another format than its source cannot be written, or undefined when it can. Torch
 * formats write each other. A torch copy of a safetensors source is written as a plain state dict,
 * when the source has no general metadata a state dict could not hold (a folder unit's
 * adapter_config.json is written beside it); never for the seed's layout, whose metadata lives in the file.
 * A torch source is not converted to safetensors (its tree may hold more than tensors).
 */
function crossFormatRefusal(c: FileEntry, src: FileEntry): string | undefined {
  if (c.format === src.format || (isTorch(c.format) && isTorch(src.format))) return undefined;
  if (src.format === 'safetensors' && isTorch(c.format) && c.layout !== 'seed' && src.layout !== 'seed') {
    const kept = Object.keys(src.metaKeys).filter((k) => !isUnitConfigKey(k));
    if (!kept.length) return undefined;
    const shown = kept.slice(0, 3).join(', ') + (kept.length > 3 ? ', ...' : '');
    return `the copy is ${c.format}, the source safetensors with metadata a torch state dict cannot hold (${shown}): save the copy as safetensors first`;
  }
  return `the copy is ${c.format}, the source ${src.format}: convert one of them first`;
}

export function planCounts(plan: PlannedLora[]): Record<Action, number> {
  const n: Record<Action, number> = { write: 0, force: 0, skip: 0, refuse: 0 };
  for (const l of plan) for (const c of l.copies) n[c.action]++;
  return n;
}
