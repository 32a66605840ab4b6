/**
 * The Copy Map view: (folder →) LoRA → its source(s), its earlier versions ("Versions (N)"), then its
 * copies; files that are no LoRA last, with why. Built from the store's last copy map through the pure
 * copyMapModel.ts; file nodes carry the file's URI so Explorer decorations and "open" work on them.
 * The folders' hints (no source folder yet) show as the view's message.
 */
import * as path from 'node:path';
import {
  type CancellationToken,
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
import { FileHashesRequest, type FolderRef } from '../../server/src/protocol/messages';
import type { CopyMapStore } from './copyMapStore';
import {
  fileText,
  filesOfNoLora,
  fileTooltip,
  hashesTooltip,
  hintMessage,
  loraGroups,
  loraRows,
  plural,
  versionsLabel,
} from './copyMapModel';
import { isProblem, statusIcon } from './icons';
import type { ServerClient } from './serverClient';

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
/** A LoRA's earlier versions (status VERSION), newest first. */
export interface VersionsNode {
  kind: 'versions';
  folder: string;
  lora: LoraReport;
  files: FileReport[];
}
/** The files of a folder that are no LoRA checkpoint. */
export interface NotLorasNode {
  kind: 'notLoras';
  folder: string;
  files: FileReport[];
}
export interface FileNode {
  kind: 'file';
  folder: string;
  uri: Uri;
  report: FileReport;
  sourceUri?: Uri;
}
export type MapNode = FolderNode | LoraNode | VersionsNode | NotLorasNode | FileNode;

function fileUri(folder: string, rel: string): Uri {
  return Uri.joinPath(Uri.parse(folder), ...rel.split('/'));
}

function folderChildren(folder: string, loras: LoraReport[], files: FileReport[]): MapNode[] {
  const out: MapNode[] = loraGroups(loras, files).map((g) => ({ kind: 'lora', folder, lora: g.lora, files: g.files }));
  const others = filesOfNoLora(files);
  if (others.length) out.push({ kind: 'notLoras', folder, files: others });
  return out;
}

function fileNode(folder: string, report: FileReport, sourceUri?: Uri): FileNode {
  return { kind: 'file', folder, uri: fileUri(folder, report.path), report, sourceUri };
}

export class CopyMapTree implements TreeDataProvider<MapNode>, Disposable {
  private readonly emitter = new EventEmitter<MapNode | undefined>();
  readonly onDidChangeTreeData = this.emitter.event;
  readonly view: TreeView<MapNode>;
  private readonly disposables: Disposable[] = [this.emitter];

  constructor(
    private readonly store: CopyMapStore,
    private readonly server?: ServerClient,
  ) {
    this.view = window.createTreeView('loraSync.copyMap', { treeDataProvider: this, showCollapseAll: true });
    this.disposables.push(
      this.view,
      store.onDidChange(() => this.update()),
    );
  }

  private update(): void {
    const problems = this.store.files().filter((f) => isProblem(f.report.status)).length;
    this.view.badge = problems ? { value: problems, tooltip: `${plural(problems, 'file')} need attention` } : undefined;
    this.view.message = hintMessage(this.store.result?.folders ?? []);
    this.emitter.fire(undefined);
  }

  getChildren(node?: MapNode): MapNode[] {
    const folders = this.store.result?.folders ?? [];
    if (!node) {
      if (folders.length === 1) return folderChildren(folders[0].uri, folders[0].loras, folders[0].files);
      return folders.map((f) => ({
        kind: 'folder',
        folder: { uri: f.uri, root: f.root },
        loras: f.loras,
        files: f.files,
      }));
    }
    if (node.kind === 'folder') return folderChildren(node.folder.uri, node.loras, node.files);
    if (node.kind === 'notLoras') return node.files.map((r) => fileNode(node.folder, r));
    const sourceUri = node.kind !== 'file' && node.lora.source ? fileUri(node.folder, node.lora.source) : undefined;
    if (node.kind === 'versions') return node.files.map((r) => fileNode(node.folder, r, sourceUri));
    if (node.kind === 'lora')
      return loraRows(node.files).map((row) =>
        row.kind === 'versions'
          ? { kind: 'versions', folder: node.folder, lora: node.lora, files: row.files }
          : fileNode(node.folder, row.report, row.report.role === 'source' ? undefined : sourceUri),
      );
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
    if (node.kind === 'versions') return versionsItem(node);
    if (node.kind === 'notLoras') return notLorasItem(node);
    return fileItem(node);
  }

  /**
   * A file row's tooltip gains the ecosystem's hashes when it is hovered: they cost a pass over the
   * file, so they are asked for then (the server remembers them per file version), never in a scan.
   */
  async resolveTreeItem(item: TreeItem, node: MapNode, token: CancellationToken): Promise<TreeItem> {
    if (node.kind !== 'file' || !this.server || node.report.status === 'UNRECOGNIZED' || !node.report.lora_id)
      return item;
    try {
      const h = await this.server.request(FileHashesRequest, { uri: node.uri.toString() }, token);
      if (h) item.tooltip = new MarkdownString(`${fileTooltip(node.report)}\n\n${hashesTooltip(h)}`);
    } catch {
      // The tooltip without hashes: the server is restarting, or the file went away.
    }
    return item;
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

function versionsItem(node: VersionsNode): TreeItem {
  const item = new TreeItem(versionsLabel(node.files), TreeItemCollapsibleState.Collapsed);
  item.id = `versions:${node.folder}#${node.lora.id}`;
  item.iconPath = new ThemeIcon('history');
  item.contextValue = 'loraVersions';
  item.tooltip = 'Earlier saves of the source in its training run: kept as they are, never written by a sync';
  return item;
}

function notLorasItem(node: NotLorasNode): TreeItem {
  const item = new TreeItem('Not LoRA checkpoints', TreeItemCollapsibleState.Collapsed);
  item.id = `notLoras:${node.folder}`;
  item.description = String(node.files.length);
  item.iconPath = new ThemeIcon('circle-slash');
  item.contextValue = 'loraNotLoras';
  item.tooltip =
    'Checkpoint files that hold no LoRA (optimizer state, a full model, another adapter type): LoRA Sync leaves them alone';
  return item;
}

function fileItem(node: FileNode): TreeItem {
  const { report } = node;
  const item = new TreeItem(node.uri);
  const text = fileText(report);
  item.id = `file:${node.folder}#${report.path}`;
  item.label = text.label;
  item.description = text.description;
  item.iconPath = statusIcon(report.status);
  // A file of no LoRA has no source to open: `none`, not `unreadable` (a corrupt file of a known LoRA).
  const role = report.role ?? (report.status === 'UNRECOGNIZED' ? 'none' : 'unreadable');
  item.contextValue = `loraFile.${role}.${report.status}`;
  item.command = { command: 'vscode.open', title: 'Open', arguments: [node.uri] };
  item.tooltip = new MarkdownString(fileTooltip(report));
  return item;
}
