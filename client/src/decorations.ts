/** Explorer badges for problem files (S stale, D diverged, ...), from the store's copy map. */
import { type Disposable, EventEmitter, FileDecoration, type FileDecorationProvider, type Uri, window } from 'vscode';
import type { CopyMapStore } from './copyMapStore';
import { type FileStatus, isProblem, statusBadge, statusLabel } from './icons';

export class StatusDecorations implements FileDecorationProvider, Disposable {
  private readonly emitter = new EventEmitter<Uri[]>();
  readonly onDidChangeFileDecorations = this.emitter.event;
  /** Problem status by URI string. */
  private statuses = new Map<string, { uri: Uri; status: FileStatus }>();
  private readonly disposables: Disposable[] = [this.emitter];

  constructor(private readonly store: CopyMapStore) {
    this.disposables.push(
      window.registerFileDecorationProvider(this),
      store.onDidChange(() => this.update()),
    );
  }

  /** Fires only for the URIs whose status changed, so the Explorer does not repaint everything. */
  private update(): void {
    const next = new Map<string, { uri: Uri; status: FileStatus }>();
    for (const f of this.store.files())
      if (isProblem(f.report.status)) next.set(f.uri.toString(), { uri: f.uri, status: f.report.status });
    const changed: Uri[] = [];
    for (const [key, v] of next) if (this.statuses.get(key)?.status !== v.status) changed.push(v.uri);
    for (const [key, v] of this.statuses) if (!next.has(key)) changed.push(v.uri);
    this.statuses = next;
    if (changed.length) this.emitter.fire(changed);
  }

  provideFileDecoration(uri: Uri): FileDecoration | undefined {
    const hit = this.statuses.get(uri.toString());
    const badge = hit ? statusBadge(hit.status) : undefined;
    if (!hit || !badge) return undefined;
    return new FileDecoration(badge.letter, `LoRA Sync: ${statusLabel(hit.status)}`, badge.color);
  }

  dispose(): void {
    for (const d of this.disposables) d.dispose();
  }
}
