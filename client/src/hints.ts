/**
 * The server's per-folder hints (`hint` on the copy map's folders, e.g. no source folder yet): each
 * shown once per session as a notification whose button runs "Use Folder as Source" with its picker.
 * While a hint is present the Copy Map shows it as its message (copyMapTree.ts) and the
 * `loraSync.hasHint` context key is set (the view's welcome offers the command too).
 */
import { commands, type Disposable, window } from 'vscode';
import type { CopyMapStore } from './copyMapStore';
import { USE_FOLDER_AS_SOURCE } from './sourceFolderCommand';

const ACTION = 'Use Folder as Source…';

export class HintNotifier implements Disposable {
  /** folder URI + hint text: shown this session. */
  private readonly shown = new Set<string>();
  private hasHint = false;
  private readonly disposable: Disposable;

  constructor(store: CopyMapStore) {
    this.disposable = store.onDidChange((result) => {
      const folders = result?.folders ?? [];
      const any = folders.some((f) => f.hint);
      if (any !== this.hasHint) {
        this.hasHint = any;
        void commands.executeCommand('setContext', 'loraSync.hasHint', any);
      }
      for (const f of folders) {
        if (!f.hint) continue;
        const key = `${f.uri}\u0000${f.hint}`;
        if (this.shown.has(key)) continue;
        this.shown.add(key);
        const where = folders.length > 1 ? ` (${f.root})` : '';
        void window
          .showInformationMessage(`LoRA Sync: ${f.hint}${where}`, ACTION)
          .then((c) => c === ACTION && commands.executeCommand(USE_FOLDER_AS_SOURCE));
      }
    });
  }

  dispose(): void {
    this.disposable.dispose();
  }
}
