/**
 * The copy map: LoRA id -> its source(s) and copies, kept up to date one file at a time (a change
 * touches only the LoRA the file belonged to and the one it belongs to now). Files that are not LoRA
 * checkpoints are listed as unrecognized; unreadable files are attached to the LoRA their file name
 * points at (a truncated `LoRA_A_abc123.pt` still belongs to LoRA_A).
 */
import type { FileEntry } from './loraFile';
import { fileStem, nameFromFileName } from '../layouts/fileName';
import { adapterName } from '../layouts/peft';
import { displayNames, type RunInfo } from '../layouts/runs';
import { pickSource, versionFromStem } from '../layouts/versions';
import type { IdentifiedBy } from '../protocol/reports';

export type { IdentifiedBy } from '../protocol/reports';

export interface LoraGroup {
  id: string;
  name: string;
  sources: FileEntry[];
  copies: FileEntry[];
  /** Files that cannot be read but whose name says they belong here. */
  broken: FileEntry[];
}

export interface CopyMap {
  loras: Map<string, LoraGroup>;
  unrecognized: FileEntry[];
  /** Unreadable files that no LoRA's name claims. */
  unattached: FileEntry[];
}

const byPath = (a: FileEntry, b: FileEntry) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
const without = (list: FileEntry[], path: string) => list.filter((x) => x.path !== path);

/** How the file's own id was found, as the reports say it. */
function ownIdentity(e: FileEntry): IdentifiedBy {
  return e.idFrom === 'metadata' ? 'metadata_id' : e.idFrom === 'layout' ? 'layout_name' : 'file_name';
}

/** Adds `v` to the set under `k`. */
function addTo<K, V>(m: Map<K, Set<V>>, k: K | undefined, v: V): void {
  if (k === undefined || k === '') return;
  const set = m.get(k);
  if (set) set.add(v);
  else m.set(k, new Set([v]));
}
function removeFrom<K, V>(m: Map<K, Set<V>>, k: K | undefined, v: V): void {
  if (k === undefined) return;
  const set = m.get(k);
  if (!set) return;
  set.delete(v);
  if (!set.size) m.delete(k);
}

/**
 * Identity of a copy, first rule that gives a LoRA with a source: its `metadata.id` (the seed: always
 * taken, source or not); the engine's own sync record (`sync_info.lora_sync.source` → that source's
 * LoRA); its layout's name (or file name); its content (tensors equal to a source or version of exactly
 * one LoRA). A copy none of these ties to a source keeps its own id (ORPHAN).
 *
 * Kept incremental: copies whose identity is not their metadata id are "floating" and indexed by the
 * three keys a source could satisfy later (own id, tensors digest, recorded source path); a source
 * added or removed re-places just the floating copies under its keys (and, when removed, those tied
 * to its LoRA by record or content).
 */
export class CopyIndex {
  private readonly groups = new Map<string, LoraGroup>();
  private readonly groupOfPath = new Map<string, LoraGroup>();
  private readonly unrecognized = new Map<string, FileEntry>();
  private readonly unattached = new Map<string, FileEntry>();
  private readonly identity = new Map<string, IdentifiedBy>();
  /** Candidate LoRAs of a copy whose content matched more than one (it stays ORPHAN). */
  private readonly ambiguous = new Map<string, string[]>();
  /** Readable source-folder files by tensors digest: what content identity looks up. */
  private readonly sourcesByDigest = new Map<string, Set<FileEntry>>();
  private readonly floatingById = new Map<string, Set<FileEntry>>();
  private readonly floatingByDigest = new Map<string, Set<FileEntry>>();
  private readonly floatingByRecord = new Map<string, Set<FileEntry>>();

  constructor(private readonly isSource: (path: string) => boolean) {}

  groupOf(path: string): LoraGroup | undefined {
    return this.groupOfPath.get(path);
  }

  /** How the file was tied to its LoRA; undefined for files that are no readable LoRA. */
  identifiedBy(path: string): IdentifiedBy | undefined {
    return this.identity.get(path);
  }

  /** The LoRAs whose sources a copy's tensors equal, when more than one (so none was chosen). */
  contentCandidates(path: string): string[] | undefined {
    return this.ambiguous.get(path);
  }

  /** The names an unreadable file's path may give its LoRA (the seed's, kohya's without epoch, a PEFT folder's). */
  private namesOf(e: FileEntry): string[] {
    const role = e.role ?? (this.isSource(e.path) ? 'source' : 'copy');
    const names = [nameFromFileName(e.path, role)];
    const base = versionFromStem(fileStem(e.path)).base;
    if (base !== names[0]) names.push(base);
    if (/(^|\/)(adapter_model|pytorch_lora_weights)\.[a-z]+$/.test(e.path)) {
      const folder = e.path.slice(0, e.path.lastIndexOf('/'));
      if (folder) names.push(adapterName(folder).name);
    }
    return names;
  }

  /**
   * The LoRA an unreadable file's names point at. When several do (two training runs of one name), the
   * lowest id wins, so the answer does not depend on the order files were added (cold scan vs cache).
   */
  private findByName(names: string[]): LoraGroup | undefined {
    let best: LoraGroup | undefined;
    for (const g of this.groups.values()) {
      const hit =
        names.includes(g.name) ||
        [...g.sources, ...g.copies].some((f) => names.includes(nameFromFileName(f.path, f.role ?? 'copy')));
      if (hit && (!best || g.id < best.id)) best = g;
    }
    return best;
  }

  private groupFor(id: string, name: string | undefined): LoraGroup {
    let g = this.groups.get(id);
    if (!g) this.groups.set(id, (g = { id, name: name ?? id, sources: [], copies: [], broken: [] }));
    return g;
  }

  /** Adds (or replaces) a file. Returns the groups whose statuses may have changed. */
  add(e: FileEntry): LoraGroup[] {
    const touched = this.remove(e.path);
    if (e.kind === 'unrecognized') {
      this.unrecognized.set(e.path, e);
    } else if (e.kind === 'corrupt' || !e.loraId) {
      const g = this.findByName(this.namesOf(e));
      if (g) {
        g.broken.push(e);
        this.groupOfPath.set(e.path, g);
        touched.push(g);
      } else this.unattached.set(e.path, e);
    } else if (e.role === 'source') {
      const g = this.groupFor(e.loraId, e.name);
      g.sources.push(e);
      if (e.name) g.name = e.name;
      this.groupOfPath.set(e.path, g);
      this.identity.set(e.path, ownIdentity(e));
      addTo(this.sourcesByDigest, e.tensorsDigest, e);
      touched.push(g);
      this.attachUnattached(g, e);
      touched.push(...this.replaceFloating(e, undefined));
    } else {
      touched.push(this.placeCopy(e));
    }
    return unique(touched);
  }

  /** Unreadable files waiting for a LoRA of their name now have one. */
  private attachUnattached(g: LoraGroup, e: FileEntry): void {
    if (!this.unattached.size) return;
    const names = [g.name, ...this.namesOf(e)];
    for (const u of [...this.unattached.values()]) {
      if (this.namesOf(u).some((n) => names.includes(n)) && this.findByName(this.namesOf(u)) === g) {
        this.unattached.delete(u.path);
        g.broken.push(u);
        this.groupOfPath.set(u.path, g);
      }
    }
  }

  private hasSource(g: LoraGroup | undefined): g is LoraGroup {
    return !!g && g.sources.some((s) => s.kind === 'lora');
  }

  /** Puts a readable copy in the LoRA its identity rules give. */
  private placeCopy(e: FileEntry): LoraGroup {
    let g: LoraGroup | undefined;
    let by: IdentifiedBy = ownIdentity(e);
    if (e.idFrom !== 'metadata') {
      const rec = e.syncInfo.engine?.source;
      const recorded = rec ? this.groupOfPath.get(rec) : undefined;
      if (recorded?.sources.some((s) => s.path === rec)) {
        g = recorded;
        by = 'sync_record';
      } else if (this.hasSource(this.groups.get(e.loraId!))) {
        g = this.groups.get(e.loraId!);
      } else {
        const ids = new Set([...(this.sourcesByDigest.get(e.tensorsDigest) ?? [])].map((s) => s.loraId!));
        if (ids.size === 1) {
          g = this.groups.get([...ids][0]);
          by = 'content';
        } else if (ids.size > 1) this.ambiguous.set(e.path, [...ids].sort());
      }
      addTo(this.floatingById, e.loraId, e);
      addTo(this.floatingByDigest, e.tensorsDigest, e);
      addTo(this.floatingByRecord, rec, e);
    }
    g ??= this.groupFor(e.loraId!, e.name);
    g.copies.push(e);
    this.groupOfPath.set(e.path, g);
    this.identity.set(e.path, by);
    this.attachUnattached(g, e);
    return g;
  }

  /**
   * A source was added (`added`) or removed (`removed`): the floating copies its id, digest or path
   * could tie, and (removed) those its LoRA held by record or content, are placed again.
   */
  private replaceFloating(
    added: FileEntry | undefined,
    removed: { e: FileEntry; g: LoraGroup } | undefined,
  ): LoraGroup[] {
    const s = (added ?? removed!.e) as FileEntry;
    const again = new Set<FileEntry>([
      ...(this.floatingById.get(s.loraId!) ?? []),
      ...(this.floatingByDigest.get(s.tensorsDigest) ?? []),
      ...(this.floatingByRecord.get(s.path) ?? []),
    ]);
    if (removed)
      for (const c of removed.g.copies) {
        const by = this.identity.get(c.path);
        if (by === 'content' || by === 'sync_record') again.add(c);
      }
    const touched: LoraGroup[] = [];
    for (const c of again) {
      if (this.groupOfPath.get(c.path) === undefined) continue;
      touched.push(...this.removeCopy(c.path));
      touched.push(this.placeCopy(c));
    }
    return touched;
  }

  private removeCopy(path: string): LoraGroup[] {
    const g = this.groupOfPath.get(path);
    if (!g) return [];
    const e = g.copies.find((c) => c.path === path);
    if (e) this.unfloat(e);
    return this.detach(path, g);
  }

  private unfloat(e: FileEntry): void {
    removeFrom(this.floatingById, e.loraId, e);
    removeFrom(this.floatingByDigest, e.tensorsDigest, e);
    removeFrom(this.floatingByRecord, e.syncInfo.engine?.source, e);
    this.ambiguous.delete(e.path);
  }

  /** Takes a file out of its group; a group with no readable file left goes, its unreadable files wait unattached. */
  private detach(path: string, g: LoraGroup): LoraGroup[] {
    this.groupOfPath.delete(path);
    this.identity.delete(path);
    g.sources = without(g.sources, path);
    g.copies = without(g.copies, path);
    g.broken = without(g.broken, path);
    if (!g.sources.length && !g.copies.length && this.groups.get(g.id) === g) {
      this.groups.delete(g.id);
      for (const b of g.broken) {
        this.groupOfPath.delete(b.path);
        this.unattached.set(b.path, b);
      }
    }
    return [g];
  }

  /** Removes a file. Returns the group it was in (its other files' statuses may change). */
  remove(path: string): LoraGroup[] {
    this.unrecognized.delete(path);
    this.unattached.delete(path);
    const g = this.groupOfPath.get(path);
    if (!g) return [];
    const src = g.sources.find((s) => s.path === path);
    if (src) {
      removeFrom(this.sourcesByDigest, src.tensorsDigest, src);
      const touched = this.detach(path, g);
      return [...touched, ...this.replaceFloating(undefined, { e: src, g })];
    }
    return this.removeCopy(path);
  }

  /** A sorted, stable view for reports. Two training runs of one name are told apart by their run. */
  snapshot(): CopyMap {
    const names = runNames([...this.groups.values()]);
    const loras = [...this.groups.values()].map((g) => ({
      ...g,
      name: names.get(g.id) ?? g.name,
      sources: [...g.sources].sort(byPath),
      copies: [...g.copies].sort(byPath),
      broken: [...g.broken].sort(byPath),
    }));
    loras.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.id < b.id ? -1 : 1));
    return {
      loras: new Map(loras.map((g) => [g.id, g])),
      unrecognized: [...this.unrecognized.values()].sort(byPath),
      unattached: [...this.unattached.values()].sort(byPath),
    };
  }
}

/** Display names of LoRAs that are training runs sharing a name (runs.ts): only those get a run suffix. */
function runNames(groups: LoraGroup[]): Map<string, string> {
  const runs: RunInfo[] = [];
  for (const g of groups) {
    const session = g.sources.find((s) => s.session)?.session ?? g.copies.find((c) => c.session)?.session;
    if (session && g.id.startsWith('name:')) runs.push({ id: g.id, name: g.name, session });
  }
  return runs.length > 1 ? displayNames(runs) : new Map();
}

function unique<T>(xs: T[]): T[] {
  return xs.length < 2 || (xs.length === 2 && xs[0] !== xs[1]) ? xs : [...new Set(xs)];
}

/**
 * A LoRA's sources in order: several files of one LoRA in source folders are its versions when
 * training progress orders them (versions.ts `pickSource`: the newest is SOURCE, the others VERSION);
 * else they are duplicates.
 */
export type SourcePick =
  | { kind: 'picked'; source: FileEntry | undefined; versions: FileEntry[] }
  | { kind: 'unordered'; why: string; files: FileEntry[] };

export function sourcePick(g: LoraGroup): SourcePick {
  const usable = g.sources.filter((s) => s.kind === 'lora');
  if (usable.length <= 1) return { kind: 'picked', source: usable[0], versions: [] };
  const p = pickSource(
    usable.map((f) => ({
      file: f,
      version: f.version,
      unmarkedName: !(
        f.version &&
        (f.version.nameEpoch !== undefined ||
          f.version.nameStep !== undefined ||
          f.version.checkpointStep !== undefined)
      ),
    })),
  );
  return p.kind === 'picked' ? { kind: 'picked', source: p.source, versions: p.versions } : p;
}

/**
 * The source copies are compared with: the only source, the newest version, or among duplicates the
 * most recently trained one (highest sync_info match, then newest file, then path) so statuses stay
 * meaningful while the duplicate itself is reported and syncing is blocked.
 */
export function primarySource(g: LoraGroup): FileEntry | undefined {
  const pick = sourcePick(g);
  if (pick.kind === 'picked') return pick.source;
  const usable = g.sources.filter((s) => s.kind === 'lora');
  return [...usable].sort(
    (a, b) =>
      (b.syncInfo.lastSyncMatch ?? -Infinity) - (a.syncInfo.lastSyncMatch ?? -Infinity) ||
      b.mtimeMs - a.mtimeMs ||
      (a.path < b.path ? -1 : 1),
  )[0];
}

/** A LoRA id, or a name that names exactly one LoRA; undefined when the map has no such LoRA. */
export function resolveLora(map: CopyMap, key: string): string | undefined {
  if (map.loras.has(key)) return key;
  const byName = [...map.loras.values()].filter((g) => g.name === key);
  return byName.length === 1 ? byName[0].id : undefined;
}
