/** The History view: the newest sync / verify / forced-overwrite events of every folder, newest first. */
import {
  type Disposable,
  EventEmitter,
  MarkdownString,
  ThemeColor,
  ThemeIcon,
  type TreeDataProvider,
  TreeItem,
  type TreeView,
  window,
} from 'vscode';
import type { HistoryEvent } from '../../server/src/protocol/reports';
import { HistoryRequest, type HistoryResult } from '../../server/src/protocol/messages';
import type { CopyMapStore } from './copyMapStore';
import type { ServerClient } from './serverClient';

const LIMIT = 200;

interface EventNode {
  event: HistoryEvent;
  root: string;
}

function counts(e: HistoryEvent): string {
  if (e.event === 'VERIFY') return e.consistent === false ? 'inconsistent' : 'consistent';
  if (e.total_copies === undefined) return '';
  return `${e.synced_copies ?? 0} synced / ${e.failed_copies ?? 0} failed / ${e.total_copies} total`;
}

function icon(e: HistoryEvent): ThemeIcon {
  if ((e.failed_copies ?? 0) > 0 || e.consistent === false)
    return new ThemeIcon('error', new ThemeColor('list.errorForeground'));
  if (e.event === 'FORCE_OVERWRITE') return new ThemeIcon('warning', new ThemeColor('list.warningForeground'));
  if (e.event === 'VERIFY') return new ThemeIcon('check');
  return new ThemeIcon('sync');
}

export class HistoryView implements TreeDataProvider<EventNode>, Disposable {
  private readonly emitter = new EventEmitter<undefined>();
  readonly onDidChangeTreeData = this.emitter.event;
  readonly view: TreeView<EventNode>;
  private nodes: EventNode[] = [];
  private readonly disposables: Disposable[] = [this.emitter];

  constructor(
    private readonly server: ServerClient,
    store: CopyMapStore,
  ) {
    this.view = window.createTreeView('loraSync.history', { treeDataProvider: this });
    // A sync or verify changes the statuses, which refreshes the store: reload then, if shown.
    this.disposables.push(
      this.view,
      store.onDidChange(() => {
        if (this.view.visible) void this.refresh();
      }),
      this.view.onDidChangeVisibility((e) => {
        if (e.visible) void this.refresh();
      }),
    );
  }

  async refresh(): Promise<HistoryResult | undefined> {
    let result: HistoryResult;
    try {
      result = await this.server.request(HistoryRequest, { limit: LIMIT });
    } catch (e) {
      this.server.log.warn(`history: ${e instanceof Error ? e.message : String(e)}`);
      return undefined;
    }
    this.nodes = result.folders
      .flatMap((f) => f.events.map((event) => ({ event, root: f.root })))
      .sort((a, b) => (a.event.time < b.event.time ? 1 : a.event.time > b.event.time ? -1 : 0))
      .slice(0, LIMIT);
    this.emitter.fire(undefined);
    return result;
  }

  getChildren(node?: EventNode): EventNode[] {
    return node ? [] : this.nodes;
  }

  getTreeItem({ event: e, root }: EventNode): TreeItem {
    const item = new TreeItem(`${e.name} · ${e.event === 'SYNC' ? (e.reason ?? 'SYNC') : e.event}`);
    const when = new Date(e.time);
    item.description = [when.toLocaleString(), counts(e)].filter(Boolean).join(' · ');
    item.iconPath = icon(e);
    item.contextValue = `loraEvent.${e.event}`;
    const md = new MarkdownString(`**${e.event}** · ${e.name} (\`${e.lora_id}\`)\n\n`);
    md.appendMarkdown(
      `${when.toLocaleString()}${e.reason ? ` · reason \`${e.reason}\`` : ''}${e.match_idx !== undefined ? ` · match ${e.match_idx}` : ''}\n\n`,
    );
    const c = counts(e);
    if (c) md.appendMarkdown(`${c}${e.skipped_copies ? `, ${e.skipped_copies} skipped` : ''}\n\n`);
    if (e.backup) md.appendMarkdown('Backup: ').appendText(`${e.backup}\n\n`);
    for (const f of e.files?.slice(0, 10) ?? []) md.appendMarkdown('- ').appendText(`${f}\n`);
    md.appendMarkdown('\n').appendText(root);
    item.tooltip = md;
    return item;
  }

  dispose(): void {
    for (const d of this.disposables) d.dispose();
  }
}
