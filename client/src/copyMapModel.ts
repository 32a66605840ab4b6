/**
 * What the Copy Map shows, as plain data (no `vscode` import, so it is unit-tested as a function):
 * LoRAs in order, each LoRA's rows (its source, then its earlier versions grouped, then its copies),
 * how a file or a PEFT / diffusers folder unit is named, the words for how a file was identified,
 * and the files that are no LoRA with why. copyMapTree.ts turns these into tree items.
 */
import type { FileReport, IdentifiedBy, Layout, LoraReport } from '../../server/src/protocol/reports';
import type { InspectHashes } from '../../server/src/protocol/inspect';
import { factsOf } from '../../server/src/protocol/statusTable';

export const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

export interface LoraGroup {
  lora: LoraReport;
  files: FileReport[];
}

/** Each LoRA with its files; LoRAs with problems first (the view opens on what needs a person), then by name. */
export function loraGroups(loras: LoraReport[], files: FileReport[]): LoraGroup[] {
  const byLora = new Map<string, FileReport[]>();
  for (const f of files) {
    if (!f.lora_id) continue;
    const list = byLora.get(f.lora_id) ?? [];
    list.push(f);
    byLora.set(f.lora_id, list);
  }
  return loras
    .map((lora) => ({ lora, files: byLora.get(lora.id) ?? [] }))
    .sort(
      (a, b) => Number(b.lora.problems > 0) - Number(a.lora.problems > 0) || a.lora.name.localeCompare(b.lora.name),
    );
}

/** Files that belong to no LoRA (UNRECOGNIZED), by path: listed apart so their `why` can be read. */
export function filesOfNoLora(files: FileReport[]): FileReport[] {
  return files.filter((f) => !f.lora_id).sort((a, b) => byPath(a.path, b.path));
}

/** Rows under a LoRA: the sources, then `versions` (one group node when there are any), then the copies. */
export type LoraRow = { kind: 'file'; report: FileReport } | { kind: 'versions'; files: FileReport[] };

// Numbers inside names compare as numbers: checkpoint-500 before checkpoint-1000.
const byPath = (a: string, b: string) => a.localeCompare(b, 'en', { numeric: true });

export function loraRows(files: FileReport[]): LoraRow[] {
  const sources: FileReport[] = [];
  const versions: FileReport[] = [];
  const copies: FileReport[] = [];
  for (const f of files) {
    if (f.status === 'VERSION') versions.push(f);
    else if (f.role === 'source') sources.push(f);
    else copies.push(f);
  }
  const sorted = (list: FileReport[]) => [...list].sort((a, b) => byPath(unitPath(a), unitPath(b)));
  const rows: LoraRow[] = sorted(sources).map((report) => ({ kind: 'file', report }));
  // Newest training progress first, the way a person looks for "the one before".
  if (versions.length) rows.push({ kind: 'versions', files: sorted(versions).reverse() });
  for (const report of sorted(copies)) rows.push({ kind: 'file', report });
  return rows;
}

export function versionsLabel(files: FileReport[]): string {
  return `Versions (${files.length})`;
}

/** The path a row stands for: the folder of a PEFT / diffusers unit, else the file. */
export function unitPath(f: FileReport): string {
  return f.unit?.kind === 'folder' ? f.unit.path : f.path;
}

const dirOf = (p: string) => (p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '');
const baseOf = (p: string) => p.slice(p.lastIndexOf('/') + 1);

/**
 * Label and description of a file row. A folder unit is named by its folder path (the weights file is
 * in the tooltip); a file by its name with its folder as description. The version label (`epoch 8`) and,
 * for an unrecognized file, its `why` go first in the description.
 */
export function fileText(f: FileReport): { label: string; description: string } {
  const folderUnit = f.unit?.kind === 'folder';
  const label = folderUnit ? f.unit!.path : baseOf(f.path);
  const where = folderUnit ? '' : dirOf(f.path);
  const extra = f.status === 'UNRECOGNIZED' ? f.why : f.version;
  return { label, description: [extra, where].filter(Boolean).join(' · ') };
}

export const IDENTIFIED_BY_WORDS: Record<IdentifiedBy, string> = {
  metadata_id: 'its metadata id',
  sync_record: 'our sync record',
  layout_name: "its layout's name",
  file_name: 'its file name',
  content: 'its content',
};

export const LAYOUT_WORDS: Record<Layout, string> = {
  seed: 'seed checkpoint',
  peft: 'PEFT adapter',
  kohya: 'kohya LoRA',
  diffusers: 'diffusers LoRA',
  'state-dict': 'plain state dict',
};

/** Markdown with every markdown character of `s` escaped (paths, messages, reasons come from files). */
export function mdText(s: string): string {
  return s.replace(/[\\`*_{}[\]()#+\-.!|<>~]/g, (c) => `\\${c}`);
}

/** One code span, whatever the text holds. */
export function mdCode(s: string): string {
  const ticks = '`'.repeat(Math.max(0, ...(s.match(/`+/g) ?? []).map((t) => t.length)) + 1);
  return `${ticks} ${s} ${ticks}`;
}

const ISSUES_SHOWN = 20;

/** The tooltip of a file row, as markdown: status, path, message, how identified, layout, version, issues. */
export function fileTooltip(f: FileReport): string {
  const out = [`**${mdText(factsOf(f.status).label)}** (${mdCode(f.status)}) · ${mdCode(f.path)}`, mdText(f.message)];
  const facts: string[] = [];
  if (f.unit?.kind === 'folder') facts.push(`Unit: the folder ${mdCode(f.unit.path)} (weights file ${mdCode(f.path)})`);
  if (f.identified_by) facts.push(`Identified by ${mdText(IDENTIFIED_BY_WORDS[f.identified_by] ?? f.identified_by)}`);
  if (f.layout) facts.push(`Layout: ${mdText(LAYOUT_WORDS[f.layout] ?? f.layout)}`);
  if (f.version) facts.push(`Version: ${mdText(f.version)}`);
  if (f.why) facts.push(`Not a LoRA: ${mdText(f.why)}`);
  if (facts.length) out.push(facts.map((l) => `- ${l}`).join('\n'));
  if (f.issues.length) {
    const lines = f.issues
      .slice(0, ISSUES_SHOWN)
      .map((i) => `- ${mdCode(i.type)}${i.param ? ` ${mdCode(i.param)}` : ''}: ${mdText(i.detail)}`);
    if (f.issues.length > ISSUES_SHOWN) lines.push(`- … and ${f.issues.length - ISSUES_SHOWN} more`);
    out.push(lines.join('\n'));
  }
  return out.join('\n\n');
}

/**
 * The ecosystem's hashes as a tooltip paragraph: AutoV2 and AutoV3 as A1111 and Civitai show them
 * (10 and 12 hex), the legacy hash when the file is large enough to have one, and each embedded hash
 * that does not match the file.
 */
export function hashesTooltip(h: InspectHashes): string {
  // Our own hex digests: no backtick to escape.
  const hex = (x: string) => `\`${x.replace(/[^0-9a-fA-F]/g, '')}\``;
  const parts = [`AutoV2 ${hex(h.autoV2.toUpperCase())}`];
  if (h.autoV3) parts.push(`AutoV3 ${hex(h.autoV3.toUpperCase())}`);
  if (h.legacyWindowBytes === 65536) parts.push(`legacy ${hex(h.legacy)}`);
  const out = [`Hashes: ${parts.join(' · ')}`];
  for (const m of h.embeddedMismatches) out.push(`- ${mdCode(m.key)} does not match this file: ${mdText(m.detail)}`);
  return out.join('\n\n');
}

/** The Copy Map's message: the folders' hints (named by folder when there are several), or undefined. */
export function hintMessage(folders: Array<{ root: string; hint?: string }>): string | undefined {
  const withHint = folders.filter((f) => f.hint);
  if (!withHint.length) return undefined;
  if (folders.length === 1) return withHint[0].hint;
  return withHint.map((f) => `${baseOf(f.root.replace(/[\\/]+$/, '')) || f.root}: ${f.hint}`).join('\n');
}
