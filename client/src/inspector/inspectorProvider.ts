/**
 * The LoRA inspector: a read-only custom editor (viewType `loraSync.inspector`) for `.pt` and
 * `.safetensors`, so opening a checkpoint (a Problem, the Explorer, the Copy Map) shows what it is
 * instead of "binary file". The page is built from `loraSync/inspect` (the server reads the file;
 * no tensor bytes reach the webview) and rebuilt when the file or its source changes on disk or
 * the server reports a new status for it. Buttons: sync this copy (`loraSync.syncCopy`), open the
 * source (in the inspector), reveal in the Explorer, refresh, compare all tensor values.
 */
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import {
  CancellationTokenSource,
  commands,
  type CustomDocument,
  type CustomReadonlyEditorProvider,
  Disposable,
  languages,
  RelativePattern,
  Uri,
  type WebviewPanel,
  window,
  workspace,
} from 'vscode';
import { InspectRequest, type InspectResult } from '../../../server/src/protocol/messages';
import type { FileReport } from '../../../server/src/protocol/reports';
import type { CopyMapStore } from '../copyMapStore';
import { errorText } from '../progress';
import type { ServerClient } from '../serverClient';
import { errorHtml, inspectorHtml, loadingHtml, type PageContext } from './inspectorHtml';

export const INSPECTOR_VIEW_TYPE = 'loraSync.inspector';

/** File events and status changes are gathered this long before the page is rebuilt. */
const REFRESH_DEBOUNCE_MS = 300;
/** While the file is still being written (the server has not read it yet), look again this often, this many times. */
const SETTLE_RETRY_MS = 1500;
const SETTLE_RETRIES = 20;

type WebviewMessage = { type: 'syncCopy' | 'openSource' | 'reveal' | 'refresh' | 'compareAll' };

export function registerInspector(extensionUri: Uri, server: ServerClient, store: CopyMapStore): Disposable[] {
  const provider = new InspectorProvider(extensionUri, server, store);
  return [
    window.registerCustomEditorProvider(INSPECTOR_VIEW_TYPE, provider, { supportsMultipleEditorsPerDocument: true }),
  ];
}

class InspectorProvider implements CustomReadonlyEditorProvider {
  constructor(
    private readonly extensionUri: Uri,
    private readonly server: ServerClient,
    private readonly store: CopyMapStore,
  ) {}

  openCustomDocument(uri: Uri): CustomDocument {
    return { uri, dispose: () => undefined };
  }

  resolveCustomEditor(document: CustomDocument, panel: WebviewPanel): void {
    const view = new InspectorView(document.uri, panel, this.extensionUri, this.server, this.store);
    panel.onDidDispose(() => view.dispose());
    void view.refresh();
  }
}

/** One open inspector tab. */
class InspectorView implements Disposable {
  private readonly disposables: Disposable[] = [];
  private sourceWatch: Disposable | undefined;
  private sourcePath: string | undefined;
  private model: InspectResult | undefined;
  private failed = false;
  private timer: NodeJS.Timeout | undefined;
  private dirty = false;
  private settleTries = 0;
  private running: CancellationTokenSource | undefined;
  /** status + message of the file as the copy map last said, to notice a change. */
  private reportKey: string | undefined;
  private readonly name: string;

  constructor(
    private readonly uri: Uri,
    private readonly panel: WebviewPanel,
    private readonly extensionUri: Uri,
    private readonly server: ServerClient,
    private readonly store: CopyMapStore,
  ) {
    this.name = path.basename(uri.fsPath);
    const media = Uri.joinPath(extensionUri, 'media');
    panel.webview.options = { enableScripts: true, localResourceRoots: [media] };
    panel.webview.html = loadingHtml(this.context(), this.name);
    this.disposables.push(
      panel.webview.onDidReceiveMessage((m: WebviewMessage) => void this.onMessage(m)),
      panel.onDidChangeViewState(() => {
        if (panel.visible && this.dirty) this.schedule();
      }),
      this.watch(uri),
      languages.onDidChangeDiagnostics((e) => {
        if (e.uris.some((u) => this.concerns(u))) this.schedule();
      }),
      store.onDidChange(() => {
        const key = this.copyMapKey();
        if (key !== this.reportKey) {
          this.reportKey = key;
          this.schedule();
        }
      }),
      server.onDidChangeStatus((s) => {
        if (this.failed && s.state === 'ready') this.schedule();
      }),
    );
  }

  private context(): PageContext {
    const media = (f: string) =>
      this.panel.webview.asWebviewUri(Uri.joinPath(this.extensionUri, 'media', f)).toString();
    return {
      cspSource: this.panel.webview.cspSource,
      nonce: randomBytes(16).toString('base64'),
      scriptUri: media('inspector.js'),
      styleUri: media('inspector.css'),
      canWrite: workspace.isTrusted,
    };
  }

  /** This file, or the source it is compared with. */
  private concerns(u: Uri): boolean {
    return u.fsPath === this.uri.fsPath || (!!this.sourcePath && u.fsPath === this.sourcePath);
  }

  private watch(u: Uri): Disposable {
    const w = workspace.createFileSystemWatcher(
      new RelativePattern(Uri.file(path.dirname(u.fsPath)), path.basename(u.fsPath)),
    );
    const changed = () => this.schedule();
    return Disposable.from(w, w.onDidChange(changed), w.onDidCreate(changed), w.onDidDelete(changed));
  }

  /** The file's report in the copy map (NFC relative path, as the server keys files). */
  private copyMapReport(): FileReport | undefined {
    const folder = workspace.getWorkspaceFolder(this.uri);
    if (!folder) return undefined;
    const rel = path.relative(folder.uri.fsPath, this.uri.fsPath).split(path.sep).join('/').normalize('NFC');
    return this.store.result?.folders.find((x) => x.uri === folder.uri.toString())?.files.find((x) => x.path === rel);
  }

  /** What of the report the page shows, to notice a change. */
  private copyMapKey(): string | undefined {
    const f = this.copyMapReport();
    return f ? JSON.stringify([f.status, f.message, f.identified_by, f.layout, f.unit, f.version, f.why]) : undefined;
  }

  private schedule(delay = REFRESH_DEBOUNCE_MS): void {
    if (!this.panel.visible) {
      this.dirty = true;
      return;
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.refresh(), delay);
  }

  async refresh(compareAll = false): Promise<InspectResult | undefined> {
    clearTimeout(this.timer);
    this.dirty = false;
    this.running?.cancel();
    const cts = (this.running = new CancellationTokenSource());
    let model: InspectResult;
    try {
      model = await this.server.request(InspectRequest, { uri: this.uri.toString(), compareAll }, cts.token);
    } catch (e) {
      if (cts.token.isCancellationRequested) return undefined;
      this.failed = true;
      this.panel.webview.html = errorHtml(this.context(), this.name, errorText(e));
      return undefined;
    } finally {
      if (this.running === cts) this.running = undefined;
      cts.dispose();
    }
    if (cts.token.isCancellationRequested) return undefined;
    this.failed = false;
    this.model = model;
    this.reportKey = this.copyMapKey();
    this.followSource(model);
    this.panel.title = this.name;
    // How the file was identified, its layout and version are the copy map's (the same server's) words.
    this.panel.webview.html = inspectorHtml(model, this.context(), this.copyMapReport());
    // A file still being written is read by the server once it settles; until then, look again.
    if (model.changedOnDisk && this.settleTries++ < SETTLE_RETRIES) this.schedule(SETTLE_RETRY_MS);
    else if (!model.changedOnDisk) this.settleTries = 0;
    return model;
  }

  /** Watches the source too: a retrained source changes this copy's differences. */
  private followSource(m: InspectResult): void {
    const abs = m.source?.abs;
    if (abs === this.sourcePath) return;
    this.sourceWatch?.dispose();
    this.sourcePath = abs;
    this.sourceWatch = abs ? this.watch(Uri.file(abs)) : undefined;
  }

  private async onMessage(m: WebviewMessage): Promise<void> {
    switch (m.type) {
      case 'refresh':
        await this.refresh();
        break;
      case 'compareAll':
        await this.refresh(true);
        break;
      case 'syncCopy':
        void this.panel.webview.postMessage({ type: 'busy', on: true });
        try {
          await commands.executeCommand('loraSync.syncCopy', this.uri);
        } finally {
          void this.panel.webview.postMessage({ type: 'busy', on: false });
        }
        await this.refresh();
        break;
      case 'openSource':
        if (this.model?.source)
          await commands.executeCommand('vscode.openWith', Uri.file(this.model.source.abs), INSPECTOR_VIEW_TYPE);
        break;
      case 'reveal':
        await commands.executeCommand('revealInExplorer', this.uri);
        break;
    }
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.running?.cancel();
    this.sourceWatch?.dispose();
    for (const d of this.disposables) d.dispose();
  }
}
