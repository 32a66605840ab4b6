/**
 * The copy map: LoRA id -> its source(s) and copies. Pure: built from file entries alone.
 * Files that are not LoRA checkpoints are listed as unrecognized; unreadable files are attached to
 * the LoRA their file name points at (a truncated `LoRA_A_abc123.pt` still belongs to LoRA_A).
 */
import { FileEntry, nameFromFile } from './loraFile';

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

export function buildCopyMap(entries: Iterable<FileEntry>, isSource: (path: string) => boolean): CopyMap {
  const loras = new Map<string, LoraGroup>();
  const unrecognized: FileEntry[] = [];
  const broken: FileEntry[] = [];
  for (const e of entries) {
    if (e.kind === 'unrecognized') unrecognized.push(e);
    else if (e.kind === 'corrupt' || !e.loraId) broken.push(e);
    else {
      let g = loras.get(e.loraId);
      if (!g) loras.set(e.loraId, (g = { id: e.loraId, name: e.name ?? e.loraId, sources: [], copies: [], broken: [] }));
      (e.role === 'source' ? g.sources : g.copies).push(e);
      if (e.role === 'source' && e.name) g.name = e.name;
    }
  }
  // Attach unreadable files by the name their file carries (by LoRA name, then by file-name identity).
  const byName = new Map<string, LoraGroup>();
  for (const g of loras.values()) {
    if (!byName.has(g.name)) byName.set(g.name, g);
    for (const f of [...g.sources, ...g.copies]) {
      const n = nameFromFile(f.path, f.role!);
      if (!byName.has(n)) byName.set(n, g);
    }
  }
  const unattached: FileEntry[] = [];
  for (const e of broken) {
    const g = byName.get(nameFromFile(e.path, isSource(e.path) ? 'source' : 'copy'));
    if (g) g.broken.push(e);
    else unattached.push(e);
  }
  for (const g of loras.values()) {
    g.sources.sort(byPath);
    g.copies.sort(byPath);
    g.broken.sort(byPath);
  }
  return { loras: new Map([...loras].sort((a, b) => (a[1].name < b[1].name ? -1 : a[1].name > b[1].name ? 1 : 0))), unrecognized: unrecognized.sort(byPath), unattached: unattached.sort(byPath) };
}

/**
 * The source copies are compared with: the only source, or among duplicates the most recently
 * trained one (highest sync_info match, then newest file) so statuses stay meaningful while the
 * duplicate itself is reported and syncing is blocked.
 */
export function primarySource(g: LoraGroup): FileEntry | undefined {
  const usable = g.sources.filter((s) => s.kind === 'lora');
  if (usable.length <= 1) return usable[0];
  return [...usable].sort((a, b) => (b.syncInfo.lastSyncMatch ?? -Infinity) - (a.syncInfo.lastSyncMatch ?? -Infinity) || b.mtimeMs - a.mtimeMs)[0];
}
