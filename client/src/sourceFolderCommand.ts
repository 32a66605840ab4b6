/**
 * "LoRA Sync: Use Folder as Source" (`loraSync.useFolderAsSource`): from the Explorer's context menu
 * on a folder, or the palette with a picker. The server adds the folder to the workspace folder's
 * `lora-sync.json` (`loraSync/useFolderAsSource`); the client only picks the folder, refuses in an
 * untrusted workspace and says what was added.
 */
import * as path from 'node:path';
import { commands, FileType, type QuickPickItem, Uri, window, workspace, type WorkspaceFolder } from 'vscode';
import { UseFolderAsSourceRequest, type UseFolderAsSourceResult } from '../../server/src/protocol/messages';
import type { CopyMapStore } from './copyMapStore';
import { errorText } from './progress';
import type { ServerClient } from './serverClient';
import { explicitSettings } from './settings';

export const USE_FOLDER_AS_SOURCE = 'loraSync.useFolderAsSource';

/** The folder relative to its workspace folder ('/', NFC); '' for the workspace folder itself. */
function relativeTo(folder: WorkspaceFolder, uri: Uri): string {
  return path.relative(folder.uri.fsPath, uri.fsPath).split(path.sep).join('/').normalize('NFC');
}

/**
 * Folders worth offering: every folder that holds a LoRA file (a PEFT / diffusers unit's own folder
 * and its parent), with how many LoRA files are at or below it. Browse… opens the folder dialog.
 */
async function pickFolder(store: CopyMapStore): Promise<Uri | undefined> {
  const counts = new Map<string, { folder: string; rel: string; n: number }>();
  for (const f of (store.result ?? (await store.refresh()))?.folders ?? []) {
    for (const r of f.files) {
      if (!r.lora_id) continue;
      let dir = r.unit?.kind === 'folder' ? r.unit.path : path.posix.dirname(r.path);
      while (dir && dir !== '.') {
        const key = `${f.uri}\u0000${dir}`;
        const c = counts.get(key) ?? { folder: f.uri, rel: dir, n: 0 };
        c.n++;
        counts.set(key, c);
        dir = path.posix.dirname(dir);
      }
    }
  }
  type Item = QuickPickItem & { uri?: Uri };
  const multi = (workspace.workspaceFolders?.length ?? 0) > 1;
  const items: Item[] = [...counts.values()]
    .sort((a, b) => a.rel.localeCompare(b.rel, 'en', { numeric: true }))
    .map((c) => ({
      label: `$(folder) ${c.rel}`,
      description: `${c.n} LoRA file${c.n === 1 ? '' : 's'}${multi ? ` · ${workspace.getWorkspaceFolder(Uri.parse(c.folder))?.name ?? ''}` : ''}`,
      uri: Uri.joinPath(Uri.parse(c.folder), ...c.rel.split('/')),
    }));
  items.push({ label: '$(folder-opened) Browse…', description: 'choose any folder of the workspace' });
  const picked = await window.showQuickPick(items, {
    title: 'LoRA Sync: Use Folder as Source',
    placeHolder: 'The folder your trainer writes to (its files become sources, the newest the source)',
    matchOnDescription: true,
  });
  if (!picked) return undefined;
  if (picked.uri) return picked.uri;
  const chosen = await window.showOpenDialog({
    canSelectFolders: true,
    canSelectFiles: false,
    canSelectMany: false,
    defaultUri: workspace.workspaceFolders?.[0]?.uri,
    openLabel: 'Use as Source',
  });
  return chosen?.[0];
}

export async function useFolderAsSource(
  server: ServerClient,
  store: CopyMapStore,
  arg?: Uri,
): Promise<UseFolderAsSourceResult | undefined> {
  // lora-sync.json is configuration the workspace's owner trusts: never edited from an untrusted one.
  if (!workspace.isTrusted) {
    void window.showWarningMessage(
      'LoRA Sync does not change lora-sync.json in an untrusted workspace. Trust the workspace to choose a source folder.',
    );
    return undefined;
  }
  const uri = arg instanceof Uri ? arg : await pickFolder(store);
  if (!uri) return undefined;
  const folder = workspace.getWorkspaceFolder(uri);
  const rel = folder ? relativeTo(folder, uri) : '';
  const isFolder = await workspace.fs.stat(uri).then(
    (st) => (st.type & FileType.Directory) !== 0,
    () => false,
  );
  if (!isFolder) {
    void window.showWarningMessage(`LoRA Sync: ${rel || uri.fsPath} is not a folder.`);
    return undefined;
  }
  if (!folder || !rel || rel.startsWith('../')) {
    void window.showWarningMessage(
      `LoRA Sync: choose a folder inside a workspace folder (${folder ? 'not the workspace folder itself' : uri.fsPath}).`,
    );
    return undefined;
  }
  let result: UseFolderAsSourceResult;
  try {
    result = await server.request(UseFolderAsSourceRequest, { uri: uri.toString() });
  } catch (e) {
    void window.showErrorMessage(`LoRA Sync: could not use ${rel} as a source folder: ${errorText(e)}`);
    return undefined;
  }
  store.schedule();
  const configPath = path.join(result.root, 'lora-sync.json');
  const config = path.basename(configPath);
  const list = result.sourceFolders.map((s) => `"${s}"`).join(', ');
  server.log.info(`use folder as source: ${rel} → ${configPath} sourceFolders [${list}]`);
  // A sourceFolders setting overrides lora-sync.json: say so, or the change seems to do nothing.
  const overridden = explicitSettings(folder.uri).sourceFolders !== undefined;
  const message = `LoRA Sync: ${rel} is now a source folder (${config} sourceFolders: ${list}).${
    overridden ? ' The setting loraSync.sourceFolders overrides it: remove that setting for it to apply.' : ''
  }`;
  const show = overridden ? window.showWarningMessage : window.showInformationMessage;
  void show(message, `Open ${config}`).then((c) => c && commands.executeCommand('vscode.open', Uri.file(configPath)));
  return result;
}
