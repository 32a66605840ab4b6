/**
 * The last `loraSync/copyMap` answer, shared by the tree, the status bar and the decorations, so
 * one refresh feeds all three. Refreshed (debounced) when the server status or our diagnostics change.
 */
import { commands, type Disposable, EventEmitter, languages, Uri } from 'vscode';
import { CopyMapRequest, type CopyMapResult } from '../../server/src/protocol/messages';
import type { FileReport, LoraReport } from '../../server/src/protocol/reports';
import type { ServerClient } from './serverClient';

const DEBOUNCE_MS = 250;

/** A file of the copy map with its absolute URI and its folder. */
export interface MapFile {
  report: FileReport;
  uri: Uri;
  folder: string;
}

export class CopyMapStore implements Disposable {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private readonly emitter = new EventEmitter<CopyMapResult | undefined>();
  private readonly disposables: Disposable[] = [this.emitter];
  result: CopyMapResult | undefined;
  readonly onDidChange = this.emitter.event;

  constructor(private readonly server: ServerClient) {
    this.disposables.push(
      server.onDidChangeStatus((s) => {
        if (s.state === 'ready' || s.state === 'error') this.schedule();
      }),
      languages.onDidChangeDiagnostics((e) => {
        if (e.uris.some((u) => /\.(pt|pth|bin|ckpt|safetensors)$/i.test(u.path))) this.schedule();
      }),
    );
  }

  schedule(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.refresh(), DEBOUNCE_MS);
  }

  /** Fetches the copy map now; a refresh asked for meanwhile runs once more afterwards. */
  async refresh(): Promise<CopyMapResult | undefined> {
    clearTimeout(this.timer);
    if (this.running) {
      this.again = true;
      await this.running;
      return this.result;
    }
    this.running = this.fetch();
    try {
      await this.running;
    } finally {
      this.running = undefined;
    }
    if (this.again) {
      this.again = false;
      return this.refresh();
    }
    return this.result;
  }

  private async fetch(): Promise<void> {
    try {
      this.result = await this.server.request(CopyMapRequest, undefined);
    } catch (e) {
      // Keep showing the last map; the status bar shows the server error.
      this.server.log.warn(`copy map: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    const hasLoras = this.result.folders.some((f) => f.loras.length > 0);
    void commands.executeCommand('setContext', 'loraSync.hasLoras', hasLoras);
    this.emitter.fire(this.result);
  }

  /** Every file with its URI. */
  files(): MapFile[] {
    const out: MapFile[] = [];
    for (const f of this.result?.folders ?? []) {
      const base = Uri.parse(f.uri);
      for (const r of f.files) out.push({ report: r, uri: Uri.joinPath(base, ...r.path.split('/')), folder: f.uri });
    }
    return out;
  }

  /** Every LoRA with its folder URI, for pickers. */
  loras(): Array<{ lora: LoraReport; folder: string; folderName: string }> {
    const out: Array<{ lora: LoraReport; folder: string; folderName: string }> = [];
    for (const f of this.result?.folders ?? [])
      for (const l of f.loras) out.push({ lora: l, folder: f.uri, folderName: f.root });
    return out;
  }

  dispose(): void {
    clearTimeout(this.timer);
    for (const d of this.disposables) d.dispose();
  }
}
