/**
 * A plain-data rendering of a tree view, taken through its own TreeDataProvider (getChildren +
 * getTreeItem), so extension-host tests check what the view shows rather than the data behind it.
 */
import { ThemeColor, ThemeIcon, type TreeDataProvider, type TreeItem, TreeItemCollapsibleState } from 'vscode';

export interface ItemSnapshot {
  label: string;
  description?: string;
  /** ThemeIcon id (`sync`, `git-compare`, ...) and its colour id, when the item has one. */
  icon?: string;
  color?: string;
  contextValue?: string;
  children?: ItemSnapshot[];
}

function labelOf(item: TreeItem): string {
  const l = item.label;
  if (typeof l === 'string') return l;
  if (l) return l.label;
  return item.resourceUri?.path.split('/').pop() ?? '';
}

/** Walks the provider to `depth` levels (collapsed items included: the view would show them on expand). */
export async function snapshotTree<T>(provider: TreeDataProvider<T>, depth = 4, node?: T): Promise<ItemSnapshot[]> {
  const children = (await provider.getChildren(node)) ?? [];
  const out: ItemSnapshot[] = [];
  for (const child of children) {
    const item = await provider.getTreeItem(child);
    const snap: ItemSnapshot = { label: labelOf(item) };
    if (typeof item.description === 'string' && item.description) snap.description = item.description;
    if (item.iconPath instanceof ThemeIcon) {
      snap.icon = item.iconPath.id;
      // ThemeColor keeps its id at run time; @types/vscode 1.91 does not declare it.
      if (item.iconPath.color instanceof ThemeColor) snap.color = (item.iconPath.color as unknown as { id: string }).id;
    }
    if (item.contextValue) snap.contextValue = item.contextValue;
    if (depth > 1 && item.collapsibleState !== undefined && item.collapsibleState !== TreeItemCollapsibleState.None) {
      snap.children = await snapshotTree(provider, depth - 1, child);
    }
    out.push(snap);
  }
  return out;
}
