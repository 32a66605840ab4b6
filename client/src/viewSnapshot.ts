/**
 * A plain-data rendering of a tree view, taken through its own TreeDataProvider (getChildren +
 * getTreeItem), so extension-host tests check what the view shows rather than the data behind it.
 */
import {
  CancellationTokenSource,
  MarkdownString,
  ThemeColor,
  ThemeIcon,
  type TreeDataProvider,
  type TreeItem,
  TreeItemCollapsibleState,
} from 'vscode';

export interface ItemSnapshot {
  label: string;
  description?: string;
  /** ThemeIcon id (`sync`, `git-compare`, ...) and its colour id, when the item has one. */
  icon?: string;
  color?: string;
  contextValue?: string;
  /** The tooltip's text (markdown source); with `resolve`, as it reads once hovered (resolveTreeItem). */
  tooltip?: string;
  children?: ItemSnapshot[];
}

function labelOf(item: TreeItem): string {
  const l = item.label;
  if (typeof l === 'string') return l;
  if (l) return l.label;
  return item.resourceUri?.path.split('/').pop() ?? '';
}

/**
 * Walks the provider to `depth` levels (collapsed items included: the view would show them on expand).
 * `resolve`: each item also goes through resolveTreeItem, as VS Code does when the item is hovered.
 */
export async function snapshotTree<T>(
  provider: TreeDataProvider<T>,
  depth = 4,
  node?: T,
  resolve = false,
): Promise<ItemSnapshot[]> {
  const children = (await provider.getChildren(node)) ?? [];
  const out: ItemSnapshot[] = [];
  for (const child of children) {
    let item = await provider.getTreeItem(child);
    if (resolve && provider.resolveTreeItem) {
      const cts = new CancellationTokenSource();
      item = (await provider.resolveTreeItem(item, child, cts.token)) ?? item;
      cts.dispose();
    }
    const snap: ItemSnapshot = { label: labelOf(item) };
    if (typeof item.description === 'string' && item.description) snap.description = item.description;
    if (item.iconPath instanceof ThemeIcon) {
      snap.icon = item.iconPath.id;
      // ThemeColor keeps its id at run time; @types/vscode 1.91 does not declare it.
      if (item.iconPath.color instanceof ThemeColor) snap.color = (item.iconPath.color as unknown as { id: string }).id;
    }
    if (item.contextValue) snap.contextValue = item.contextValue;
    const tip = item.tooltip;
    if (tip) snap.tooltip = tip instanceof MarkdownString ? tip.value : String(tip);
    if (depth > 1 && item.collapsibleState !== undefined && item.collapsibleState !== TreeItemCollapsibleState.None) {
      snap.children = await snapshotTree(provider, depth - 1, child, resolve);
    }
    out.push(snap);
  }
  return out;
}
