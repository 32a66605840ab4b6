/**
 * The Copy Map view: (folder →) LoRA → its source(s), then its copies. Built from the store's last
 * copy map; file nodes carry the file's URI so Explorer decorations and "open" work on them.
 */
import * as path from 'node:path';
import {
  type Disposable,
  EventEmitter,
  MarkdownString,
  ThemeColor,
  ThemeIcon,
  type TreeDataProvider,
  TreeItem,
  TreeItemCollapsibleState,
  type TreeView,
  Uri,
  window,
} from 'vscode';
import type { FileReport, LoraReport } from '../../server/src/protocol/reports';
import type { FolderRef } from '../../server/src/protocol/messages';
import type { CopyMapStore } from './copyMapStore';
import { isProblem, statusIcon, statusLabel } from './icons';

export interface FolderNode {
  kind: 'folder';
  folder: FolderRef;
  loras: LoraReport[];
  files: FileReport[];
}
export interface LoraNode {
  kind: 'lora';
  folder: string;
  lora: LoraReport;
  files: FileReport[];
}
export interface FileNode {
  kind: 'file';
  folder: string;
  uri: Uri;
  report: FileReport;
  sourceUri?: Uri;
}
export type MapNode = FolderNode | LoraNode | FileNode;

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

function loraNodes(folder: string, loras: LoraReport[], files: FileReport[]): LoraNode[] {
  const byLora = new Map<string, FileReport[]>();
  for (const f of files) {
    if (!f.lora_id) continue;
    const list = byLora.get(f.lora_id) ?? [];
    list.push(f);
    byLora.set(f.lora_id, list);
  }
  // Problems first, so the view opens on what needs a person; then by name.
  return loras
    .map((lora) => ({ kind: 'lora' as const, folder, lora, files: byLora.get(lora.id) ?? [] }))
    .sort(
      (a, b) => Number(b.lora.problems > 0) - Number(a.lora.problems > 0) || a.lora.name.localeCompare(b.lora.name),
    );
}

function fileUri(folder: string, rel: string): Uri {
  return Uri.joinPath(Uri.parse(folder), ...rel.split('/'));
}

export class CopyMapTree implements TreeDataProvider<MapNode>, Disposable {
  private readonly emitter = new EventEmitter<MapNode | undefined>();
  readonly onDidChangeTreeData = this.emitter.event;
  readonly view: TreeView<MapNode>;
  private readonly disposables: Disposable[] = [this.emitter];

  constructor(private readonly store: CopyMapStore) {
    this.view = window.createTreeView('loraSync.copyMap', { treeDataProvider: this, showCollapseAll: true });
    this.disposables.push(
      this.view,
      store.onDidChange(() => this.update()),
    );
  }

  private update(): void {
    const problems = this.store.files().filter((f) => isProblem(f.report.status)).length;
    this.view.badge = problems ? { value: problems, tooltip: `${plural(problems, 'file')} need attention` } : undefined;
    this.emitter.fire(undefined);
  }

  getChildren(node?: MapNode): MapNode[] {
    const folders = this.store.result?.folders ?? [];
    if (!node) {
      if (folders.length === 1) return loraNodes(folders[0].uri, folders[0].loras, folders[0].files);
      return folders.map((f) => ({
        kind: 'folder',
        folder: { uri: f.uri, root: f.root },
        loras: f.loras,
        files: f.files,
      }));
    }
    if (node.kind === 'folder') return loraNodes(node.folder.uri, node.loras, node.files);
    if (node.kind === 'lora') {
      const sourceUri = node.lora.source ? fileUri(node.folder, node.lora.source) : undefined;
      const rank = (f: FileReport) => (f.role === 'source' ? 0 : 1);
      return [...node.files]
        .sort((a, b) => rank(a) - rank(b) || a.path.localeCompare(b.path))
        .map((report) => ({
          kind: 'file',
          folder: node.folder,
          uri: fileUri(node.folder, report.path),
          report,
          sourceUri: report.role === 'source' ? undefined : sourceUri,
        }));
    }
    return [];
  }

  getTreeItem(node: MapNode): TreeItem {
    if (node.kind === 'folder') {
      const item = new TreeItem(path.basename(node.folder.root), TreeItemCollapsibleState.Expanded);
      item.description = plural(node.loras.length, 'LoRA');
      item.iconPath = ThemeIcon.Folder;
      item.contextValue = 'loraFolder';
      item.tooltip = node.folder.root;
      return item;
    }
    if (node.kind === 'lora') return loraItem(node);
    return fileItem(node);
  }

  dispose(): void {
    for (const d of this.disposables) d.dispose();
  }
}

function loraItem(node: LoraNode): TreeItem {
  const { lora } = node;
  const item = new TreeItem(
    lora.name,
    lora.problems ? TreeItemCollapsibleState.Expanded : TreeItemCollapsibleState.Collapsed,
  );
  item.id = `lora:${node.folder}#${lora.id}`;
  item.description = `${lora.id} · ${lora.problems ? plural(lora.problems, 'problem') : 'in sync'}`;
  item.iconPath = lora.problems
    ? new ThemeIcon('warning', new ThemeColor('list.warningForeground'))
    : new ThemeIcon('pass', new ThemeColor('testing.iconPassed'));
  item.contextValue = lora.problems ? 'lora.problems' : 'lora';
  const md = new MarkdownString(`**${lora.name}** (\`${lora.id}\`)\n\n`);
  md.appendMarkdown(lora.source ? `Source: \`${lora.source}\`\n\n` : 'No readable source\n\n');
  const copies = lora.copies.length;
  md.appendMarkdown(`${copies} ${copies === 1 ? 'copy' : 'copies'}, ${plural(lora.problems, 'problem')}`);
  item.tooltip = md;
  return item;
}

function fileItem(node: FileNode): TreeItem {
  const { report } = node;
  const item = new TreeItem(node.uri);
  item.id = `file:${node.folder}#${report.path}`;
  item.label = path.posix.basename(report.path);
  item.description = path.posix.dirname(report.path) === '.' ? '' : path.posix.dirname(report.path);
  item.iconPath = statusIcon(report.status);
  item.contextValue = `loraFile.${report.role ?? 'unreadable'}.${report.status}`;
  item.command = { command: 'vscode.open', title: 'Open', arguments: [node.uri] };
  const md = new MarkdownString(`**${statusLabel(report.status)}** (\`${report.status}\`) · \`${report.path}\`\n\n`);
  md.appendText(report.message);
  if (report.issues.length) {
    md.appendMarkdown('\n\n');
    for (const i of report.issues.slice(0, 20))
      md.appendMarkdown(`- \`${i.type}\`${i.param ? ` \`${i.param}\`` : ''}: `).appendText(`${i.detail}\n`);
    if (report.issues.length > 20) md.appendMarkdown(`- … and ${report.issues.length - 20} more`);
  }
  item.tooltip = md;
  return item;
}
