/**
 * The copy map: LoRA id -> its source(s) and copies, kept up to date one file at a time (a change
 * touches only the LoRA the file belonged to and the one it belongs to now). Files that are not LoRA
 * checkpoints are listed as unrecognized; unreadable files are attached to the LoRA their file name
 * points at (a truncated `LoRA_A_abc123.pt` still belongs to LoRA_A).
 */
import { type FileEntry, nameFromFile } from './loraFile';

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

export class CopyIndex {
  private readonly groups = new Map<string, LoraGroup>();
  private readonly groupOfPath = new Map<string, LoraGroup>();
  private readonly unrecognized = new Map<string, FileEntry>();
  private readonly unattached = new Map<string, FileEntry>();

  constructor(private readonly isSource: (path: string) => boolean) {}

  groupOf(path: string): LoraGroup | undefined {
    return this.groupOfPath.get(path);
  }

  /** The file's name as the seed spells it, for attaching unreadable files. */
  private fileName(e: FileEntry): string {
    return nameFromFile(e.path, e.role ?? (this.isSource(e.path) ? 'source' : 'copy'));
  }

  private findByName(name: string): LoraGroup | undefined {
    for (const g of this.groups.values()) {
      if (g.name === name) return g;
      if ([...g.sources, ...g.copies].some((f) => this.fileName(f) === name)) return g;
    }
    return undefined;
  }

  /** Adds (or replaces) a file. Returns the groups whose statuses may have changed. */
  add(e: FileEntry): LoraGroup[] {
    const touched = this.remove(e.path);
    if (e.kind === 'unrecognized') {
      this.unrecognized.set(e.path, e);
    } else if (e.kind === 'corrupt' || !e.loraId) {
      const g = this.findByName(this.fileName(e));
      if (g) {
        g.broken.push(e);
        this.groupOfPath.set(e.path, g);
        touched.push(g);
      } else this.unattached.set(e.path, e);
    } else {
      let g = this.groups.get(e.loraId);
      if (!g)
        this.groups.set(
          e.loraId,
          (g = { id: e.loraId, name: e.name ?? e.loraId, sources: [], copies: [], broken: [] }),
        );
      (e.role === 'source' ? g.sources : g.copies).push(e);
      if (e.role === 'source' && e.name) g.name = e.name;
      this.groupOfPath.set(e.path, g);
      touched.push(g);
      // Unreadable files waiting for a LoRA of their name now have one.
      if (this.unattached.size)
        for (const u of [...this.unattached.values()]) {
          if (this.fileName(u) === g.name || this.fileName(u) === this.fileName(e)) {
            this.unattached.delete(u.path);
            g.broken.push(u);
            this.groupOfPath.set(u.path, g);
          }
        }
    }
    return unique(touched);
  }

  /** Removes a file. Returns the group it was in (its other files' statuses may change). */
  remove(path: string): LoraGroup[] {
    this.unrecognized.delete(path);
    this.unattached.delete(path);
    const g = this.groupOfPath.get(path);
    if (!g) return [];
    this.groupOfPath.delete(path);
    g.sources = without(g.sources, path);
    g.copies = without(g.copies, path);
    g.broken = without(g.broken, path);
    if (!g.sources.length && !g.copies.length) {
      // No readable file left: the group goes, its unreadable files wait unattached.
      this.groups.delete(g.id);
      for (const b of g.broken) {
        this.groupOfPath.delete(b.path);
        this.unattached.set(b.path, b);
      }
    }
    return [g];
  }

  /** A sorted, stable view for reports. */
  snapshot(): CopyMap {
    const loras = [...this.groups.values()].map((g) => ({
      ...g,
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

function unique<T>(xs: T[]): T[] {
  return xs.length < 2 || (xs.length === 2 && xs[0] !== xs[1]) ? xs : [...new Set(xs)];
}

/**
 * The source copies are compared with: the only source, or among duplicates the most recently
 * trained one (highest sync_info match, then newest file, then path) so statuses stay meaningful while
 * the duplicate itself is reported and syncing is blocked.
 */
export function primarySource(g: LoraGroup): FileEntry | undefined {
  const usable = g.sources.filter((s) => s.kind === 'lora');
  if (usable.length <= 1) return usable[0];
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
