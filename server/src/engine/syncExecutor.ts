/**
 * The sync executor: carries a plan out. For each copy: check that neither the source nor the copy
 * changed since the plan, build the new checkpoint (the source's tensors and general metadata, the
 * copy's own keys exactly as they were, a new sync_info), keep a backup when forced, write it
 * atomically, and read it back to confirm. One copy failing never stops the others. What a torch
 * copy holds is torchCopy.ts (safetensors: safetensorsCopy.ts); a folder unit's config is
 * unitConfigSync.ts.
 */
import { copyFile, lstat, mkdir, realpath } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import { type Checkpoint, openCheckpoint } from '../formats/checkpoint';
import { isFormatError } from '../formats/errors';
import { DIGEST_ALG } from '../formats/fingerprint';
import { ensureRealDir } from '../io/realDir';
import { writeSafetensors } from '../formats/safetensors';
import { atomicWrite, type AtomicWriteOptions, fsyncDir } from '../io/atomicWrite';
import { type EngineConfig, STATE_DIR } from './config';
import { type FileEntry, readEntry } from './loraFile';
import { compareWithSource, tensorNamesText } from './statusRules';
import { droppedKeysText, keysOnlyInCopy, type PlannedLora } from './syncPlanner';
import { mapLimit } from '../io/mapLimit';
import { lockLora, LockBusy } from './loraLock';
import { safetensorsCopyOf } from './safetensorsCopy';
import { ChangedSincePlan, errText, ReadBackMismatch } from './syncErrors';
import type { SyncRecords } from './syncRecords';
import { carriesMetadata, syncInfoNode, writeStateDictCopy, writeTorchCopy } from './torchCopy';
import { backupUnitConfig, configGuard, writeUnitConfig } from './unitConfigSync';
import { isUnitConfigKey, UNIT_CONFIG, unitOf } from './unitFiles';

// Exported from here before they had modules of their own.
export { ChangedSincePlan } from './syncErrors';
export { carriesMetadata } from './torchCopy';

export interface SyncOptions {
  reason: string;
  /** The trainer's match index; default: the source's own sync_info match. */
  match?: number;
  /** Checked between copies; true stops the sync there (what is written stays written). */
  cancelled?: () => boolean;
  onProgress?: (done: number, total: number, path: string) => void;
  now?: () => Date;
}

export type CopyOutcome = 'synced' | 'failed' | 'skipped' | 'refused';

export interface CopyResult {
  path: string;
  outcome: CopyOutcome;
  reason: string;
  backup?: string;
  /** What a user should know about a written copy (an embedded hash corrected or left out, a record not kept). */
  notes?: string[];
}

/** A copy as the executor left it: a synced one with the entry read back, which the workspace indexes as is. */
export interface WrittenCopy extends CopyResult {
  entry?: FileEntry;
}

export interface LoraSyncResult<C extends CopyResult = CopyResult> {
  id: string;
  name: string;
  source?: string;
  copies: C[];
}

export interface SyncResult<C extends CopyResult = CopyResult> {
  loras: Array<LoraSyncResult<C>>;
  cancelled: boolean;
  synced: number;
  failed: number;
  skipped: number;
  refused: number;
  /** The copies are written, but the history event could not be appended (e.g. no space left for it). */
  historyError?: string;
}

/** The result without the executor's read-back entries: they are the workspace's, not its callers'. */
export function withoutEntries(r: SyncResult<WrittenCopy>): SyncResult {
  return { ...r, loras: r.loras.map((l) => ({ ...l, copies: l.copies.map(({ entry: _entry, ...c }) => c) })) };
}

/** What the executor needs from the workspace: where files are, and the entries the plan was made from. */
export interface ExecContext {
  root: string;
  cfg: EngineConfig;
  abs: (rel: string) => string;
  entry: (rel: string) => FileEntry | undefined;
  /** Whether a file's key cannot be trusted (racily clean, see Workspace): its content is compared instead. */
  racy?: (rel: string) => boolean;
  /** Where the sync of a copy that cannot carry `sync_info` (a plain state dict) is recorded. */
  records?: SyncRecords;
  /** How a written file is read back into an entry (default: readEntry with the config). */
  read?: (abs: string, rel: string) => Promise<FileEntry>;
}

/**
 * How the file differs from the one the plan was made from (same size, inode and mtime to the
 * nanosecond, a regular file: links are not followed), or undefined when it is still that file.
 */
async function changeSince(abs: string, e: FileEntry): Promise<string | undefined> {
  let st;
  try {
    st = await lstat(abs, { bigint: true });
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'vanished' : `cannot be examined (${errText(err)})`;
  }
  if (st.isSymbolicLink()) return 'became a symbolic link';
  if (st.isDirectory()) return 'became a directory';
  if (!st.isFile()) return 'is no longer a regular file';
  return Number(st.size) === e.size && st.mtimeNs.toString() === e.mtimeNs && Number(st.ino) === e.ino
    ? undefined
    : 'changed';
}

/** Whether `abs`'s folder, links resolved, is still inside the workspace (a folder swapped for a link leads elsewhere). */
async function folderInside(abs: string, rootReal: string): Promise<boolean> {
  const dir = await realpath(dirname(abs)).catch(() => undefined);
  return dir !== undefined && (dir === rootReal || dir.startsWith(rootReal + sep));
}

/** Our sync record in a safetensors copy: `sync_info` in `__metadata__`, as a JSON string (UIs ignore keys they do not know). */
function safetensorsSyncInfo(srcEntry: FileEntry, opts: SyncOptions, when: Date): string {
  return JSON.stringify({
    last_sync_match: opts.match ?? srcEntry.syncInfo.lastSyncMatch,
    last_sync_time: when.toISOString(),
    sync_reason: opts.reason,
    lora_sync: { tensors: srcEntry.tensorsDigest, alg: DIGEST_ALG, source: srcEntry.path },
  });
}

/**
 * Whether a file read back holds what the plan read in the source: the same tensors and the same
 * general metadata, apart from `except` (keys the sync set on purpose: a corrected hash, the copy's
 * own config not written yet).
 */
function holdsSource(e: FileEntry, src: FileEntry, except?: (key: string) => boolean): boolean {
  if (e.kind !== 'lora' || e.tensorsDigest !== src.tensorsDigest) return false;
  if (!except) return e.metaDigest === src.metaDigest;
  const keys = new Set([...Object.keys(e.metaKeys), ...Object.keys(src.metaKeys)]);
  for (const k of keys) if (!except(k) && e.metaKeys[k] !== src.metaKeys[k]) return false;
  return true;
}

function stamp(d: Date): string {
  return d.toISOString().replace(/[:.]/g, '-');
}

/** Copies written at once: each write waits mostly on fsync, so a few in flight share the device's latency. */
const WRITES_IN_FLIGHT = 6;

export async function executeSync(
  plan: PlannedLora[],
  ctx: ExecContext,
  opts: SyncOptions,
): Promise<SyncResult<WrittenCopy>> {
  const now = opts.now ?? (() => new Date());
  const started = now();
  const total = plan.reduce(
    (n, l) => n + l.copies.filter((c) => c.action === 'write' || c.action === 'force').length,
    0,
  );
  let done = 0;
  let cancelled = false;
  const results: Array<LoraSyncResult<WrittenCopy>> = plan.map((l) => ({
    id: l.id,
    name: l.name,
    source: l.source,
    copies: [],
  }));
  // Sources are opened once per LoRA, lazily, and closed when its last copy is done.
  const open = new Map<string, { src?: Checkpoint; err?: string; left: number; release?: () => Promise<void> }>();
  const tasks: Array<{ li: number; path: string; force: boolean }> = [];
  plan.forEach((lora, li) => {
    for (const c of lora.copies) {
      if (c.action === 'skip' || c.action === 'refuse')
        results[li].copies.push({ path: c.path, outcome: c.action === 'skip' ? 'skipped' : 'refused', reason: c.why });
      else tasks.push({ li, path: c.path, force: c.action === 'force' });
    }
    const n = lora.copies.filter((c) => c.action === 'write' || c.action === 'force').length;
    if (n) open.set(lora.id, { left: n });
  });
  const rootReal = await realpath(ctx.root);
  const sourceOf = async (lora: PlannedLora) => {
    const slot = open.get(lora.id)!;
    if (slot.src || slot.err) return slot;
    const srcEntry = ctx.entry(lora.source!)!;
    try {
      // One process at a time writes a LoRA's copies.
      slot.release = await lockLora(ctx.root, lora.id).catch((e) => {
        throw e instanceof LockBusy
          ? e
          : new ChangedSincePlan(`its lock under ${STATE_DIR}/locks cannot be taken: ${errText(e)}`);
      });
      const change = await changeSince(ctx.abs(lora.source!), srcEntry);
      if (change)
        throw new ChangedSincePlan(`the source ${lora.source} ${change} since the plan: rescan and sync again`);
      const src = await openCheckpoint(ctx.abs(lora.source!));
      // The plan judged the file it read; judge what was opened too: code is never propagated.
      if (src.unsafe.length) {
        await src.close();
        throw new ChangedSincePlan(
          `the source ${lora.source} now names globals torch.load would run (${src.unsafe.map((u) => u.global).join(', ')}): never propagated`,
        );
      }
      slot.src = src;
    } catch (e) {
      const unsafe = isFormatError(e) ? e.unsafe : undefined;
      slot.err =
        e instanceof ChangedSincePlan || e instanceof LockBusy
          ? e.message
          : unsafe?.length
            ? `the source ${lora.source} now names globals torch.load would run (${unsafe.map((u) => u.global).join(', ')}): never propagated`
            : `the source cannot be read: ${(e as Error).message}`;
    }
    return slot;
  };
  const opening = new Map<string, Promise<{ src?: Checkpoint; err?: string; left: number }>>();
  // Folders that copies were renamed into: each is fsync'd once, after the writes, before the result.
  const dirs = new Set<string>();
  await mapLimit(tasks, WRITES_IN_FLIGHT, async (t) => {
    const lora = plan[t.li];
    const res = results[t.li];
    if (opts.cancelled?.()) cancelled = true;
    if (cancelled) {
      res.copies.push({ path: t.path, outcome: 'skipped', reason: 'cancelled' });
    } else {
      if (!opening.has(lora.id)) opening.set(lora.id, sourceOf(lora));
      const slot = await opening.get(lora.id)!;
      if (slot.err || !slot.src)
        res.copies.push({ path: t.path, outcome: 'skipped', reason: slot.err ?? 'the source cannot be read' });
      else {
        opts.onProgress?.(done, total, t.path);
        const srcEntry = ctx.entry(lora.source!)!;
        res.copies.push(
          await syncOne(
            t.path,
            t.force,
            slot.src,
            srcEntry,
            ctx.abs(lora.source!),
            ctx,
            opts,
            now(),
            started,
            rootReal,
            dirs,
          ),
        );
        done++;
      }
    }
    const slot = open.get(lora.id)!;
    if (--slot.left === 0) {
      await slot.src?.close();
      await slot.release?.();
    }
  });
  await mapLimit([...dirs], 4, (d) => fsyncDir(d));
  // Report copies in plan order whatever order they finished in.
  plan.forEach((lora, li) => {
    const order = new Map(lora.copies.map((c, i) => [c.path, i]));
    results[li].copies.sort((a, b) => order.get(a.path)! - order.get(b.path)!);
  });
  const count = (o: CopyOutcome) => results.reduce((n, l) => n + l.copies.filter((c) => c.outcome === o).length, 0);
  return {
    loras: results,
    cancelled,
    synced: count('synced'),
    failed: count('failed'),
    skipped: count('skipped'),
    refused: count('refused'),
  };
}

async function syncOne(
  rel: string,
  force: boolean,
  src: Checkpoint,
  srcEntry: FileEntry,
  srcAbs: string,
  ctx: ExecContext,
  opts: SyncOptions,
  when: Date,
  started: Date,
  rootReal: string,
  dirs: Set<string>,
): Promise<WrittenCopy> {
  const abs = ctx.abs(rel);
  const planned = ctx.entry(rel);
  if (!planned) return { path: rel, outcome: 'skipped', reason: 'not in the index' };
  const folderUnit = unitOf(planned).kind === 'folder';
  const readBack = ctx.read ?? ((a: string, r: string) => readEntry(a, r, ctx.cfg));
  // Checked just before writing, and again just before the rename.
  const guard = async () => {
    const change = await changeSince(abs, planned);
    if (change) throw new ChangedSincePlan(`${rel} ${change} since the plan: it was not overwritten`);
    if (!(await folderInside(abs, rootReal)))
      throw new ChangedSincePlan(`the folder of ${rel} now leads outside the workspace (a link?): it was not written`);
    const srcChange = await changeSince(srcAbs, srcEntry);
    if (srcChange) throw new ChangedSincePlan(`the source ${srcChange} during the sync: ${rel} was not overwritten`);
    // A folder unit's config is part of what the plan judged: the copy's and the source's must be unchanged too.
    if (folderUnit) await configGuard(rel, abs, srcAbs, planned, srcEntry);
  };
  let entry: FileEntry | undefined;
  // Keys the new file differs in from the source on purpose (see holdsSource).
  // A folder unit's weights are read back beside the copy's old config, which is written after them.
  const except = new Set<string>();
  const excepted = (k: string) => except.has(k) || (folderUnit && isUnitConfigKey(k));
  // Last, the new file itself is read back before it replaces the copy: it must hold what the plan
  // read in the source. A source rewritten in place within one timestamp tick keeps its (size,
  // mtime, inode) and would otherwise slip a version the plan never saw into the copy.
  const beforeRename = async (temp: string) => {
    await guard();
    entry = await readBack(temp, rel);
    if (!holdsSource(entry, srcEntry, folderUnit || except.size ? excepted : undefined)) {
      throw new ReadBackMismatch(
        `the new file, read back, does not hold what the plan read in the source (was the source rewritten in place?): ${rel} was not replaced`,
      );
    }
  };
  let backup: string | undefined;
  const notes: string[] = [];
  let weightsWritten = false;
  try {
    await guard();
    // A copy read within its mtime tick may have been rewritten since with the same key: its content
    // must still be what the plan judged (a copy edited by hand is never overwritten unasked).
    if (ctx.racy?.(rel)) {
      const now = await readBack(abs, rel);
      if (now.tensorsDigest !== planned.tensorsDigest || now.metaDigest !== planned.metaDigest) {
        return {
          path: rel,
          outcome: 'skipped',
          reason: `${rel} changed since the plan (within its timestamp tick): it was not overwritten`,
        };
      }
    }
    const copy = await openCheckpoint(abs);
    let record = false;
    try {
      // As for the source: the file opened is judged, not only the one the plan read.
      if (copy.unsafe.length)
        return {
          path: rel,
          outcome: 'refused',
          reason: `the copy now names globals torch.load would run (${copy.unsafe.map((u) => u.global).join(', ')}): never overwritten blindly`,
        };
      // Keys only the copy had are dropped by the write, and a source retrained with other tensor names
      // replaces a network of another shape (a new run at the source's path): the old copy is kept, as
      // for a forced one.
      const dropped = keysOnlyInCopy(planned, srcEntry);
      const names = compareWithSource(planned, srcEntry);
      const renamed = names.missing || names.extra ? tensorNamesText(names) : undefined;
      if ((force || dropped.length || renamed) && ctx.cfg.backups)
        backup = await keepBackup(ctx.root, rel, abs, started, folderUnit);
      const kept = backup ? `; the old copy is in ${backup}` : '';
      if (dropped.length) notes.push(`${droppedKeysText(dropped, true)}${kept}`);
      if (renamed && !force) notes.push(`the source's tensor names are not this copy's (${renamed})${kept}`);
      const how: AtomicWriteOptions = { beforeRename, deferDirSync: (d) => dirs.add(d) };
      if (src.format === 'safetensors' && copy.format !== 'safetensors') {
        // A torch copy of a safetensors source (the planner allows it only when the source has no
        // metadata a state dict could not hold): the copy keeps its format, its record is kept apart.
        record = true;
        await writeStateDictCopy(abs, src, how);
      } else if (src.format === 'safetensors') {
        const made = await safetensorsCopyOf(src, copy, ctx.cfg, safetensorsSyncInfo(srcEntry, opts, when));
        for (const k of made.changedKeys) except.add(k);
        notes.push(...made.notes);
        await atomicWrite(abs, (fh) => writeSafetensors(fh, made.tensors, made.metadata), how);
      } else {
        record = !carriesMetadata(src);
        const info = record ? undefined : syncInfoNode(src, srcEntry, opts, when);
        await writeTorchCopy(abs, src, copy, ctx.cfg, info, how);
      }
      weightsWritten = true;
    } finally {
      await copy.close();
    }
    if (record) {
      // After the write: a crash between leaves a copy equal to its source (IN_SYNC) without a record,
      // which errs on the safe side once the source moves on (DIVERGED, refused unless forced).
      const r = { tensors: srcEntry.tensorsDigest, alg: DIGEST_ALG, source: srcEntry.path, time: when.toISOString() };
      await ctx.records
        ?.record(rel, r)
        .catch((e) => notes.push(`the sync record under ${STATE_DIR}/ could not be written (${errText(e)})`));
    }
    if (folderUnit && (await writeUnitConfig(rel, abs, srcAbs, planned, srcEntry, dirs))) {
      // The entry read back saw the copy's old config: read the unit again as it now is.
      entry = await readBack(abs, rel);
    }
    return {
      path: rel,
      outcome: 'synced',
      reason: force ? 'forced' : 'synced',
      backup,
      entry,
      ...(notes.length ? { notes } : {}),
    };
  } catch (e) {
    // The weights are in, the config is not: reported as failed, with the entry so the index shows the drift.
    const partly = weightsWritten
      ? { entry, reason: `${rel} was written but its ${UNIT_CONFIG} was not (the next sync finishes it): ` }
      : undefined;
    if (e instanceof ChangedSincePlan)
      return partly
        ? { path: rel, outcome: 'failed', reason: partly.reason + e.message, entry: partly.entry, backup }
        : { path: rel, outcome: 'skipped', reason: e.message };
    // A copy that now names code and cannot be read either: the code is what the user must hear.
    if (isFormatError(e) && e.unsafe?.length)
      return {
        path: rel,
        outcome: 'refused',
        reason: `the copy now names globals torch.load would run (${e.unsafe.map((u) => u.global).join(', ')}): never overwritten blindly`,
      };
    const why = e instanceof ReadBackMismatch ? e.message : errText(e);
    return partly
      ? { path: rel, outcome: 'failed', reason: partly.reason + why, entry: partly.entry, backup }
      : { path: rel, outcome: 'failed', reason: why };
  }
}

/** Copies the old copy to `.lora-sync/backups/<time>/<path>` before a forced overwrite; a folder unit's config goes beside it. */
async function keepBackup(root: string, rel: string, abs: string, started: Date, folderUnit: boolean): Promise<string> {
  const backup = join(STATE_DIR, 'backups', stamp(started), rel);
  // The state folder and its backups folder are real folders, not links out of the workspace.
  await ensureRealDir(join(root, STATE_DIR));
  await ensureRealDir(join(root, STATE_DIR, 'backups'));
  await mkdir(dirname(join(root, backup)), { recursive: true });
  await copyFile(abs, join(root, backup));
  if (folderUnit) await backupUnitConfig(abs, join(root, dirname(backup)));
  return backup;
}
