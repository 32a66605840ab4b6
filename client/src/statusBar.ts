/** The status bar item: LoRA count and problem counts, a spinner while the server works, red on error. */
import { type Disposable, MarkdownString, StatusBarAlignment, type StatusBarItem, ThemeColor, window } from 'vscode';
import type { CopyMapStore } from './copyMapStore';
import { bucketOf } from './icons';
import type { ServerClient } from './serverClient';

/** Buckets shown in the text, most urgent first; the tooltip lists them all. */
// Stale first: it is what one click (Sync All) fixes; then what needs a person.
const ORDER = ['stale', 'diverged', 'corrupt', 'unsafe', 'duplicate', 'drift', 'orphan'];
const IN_TEXT = 4;

export class StatusBar implements Disposable {
  private readonly item: StatusBarItem;
  private readonly disposables: Disposable[] = [];

  constructor(
    private readonly server: ServerClient,
    private readonly store: CopyMapStore,
  ) {
    this.item = window.createStatusBarItem('loraSync.status', StatusBarAlignment.Left, 10);
    this.item.name = 'LoRA Sync';
    this.item.command = 'loraSync.copyMap.focus';
    this.disposables.push(
      this.item,
      server.onDidChangeStatus(() => this.render()),
      store.onDidChange(() => this.render()),
    );
    this.render();
    this.item.show();
  }

  private counts(): Map<string, number> {
    const out = new Map<string, number>();
    for (const f of this.store.files()) {
      const b = bucketOf(f.report.status);
      if (b) out.set(b, (out.get(b) ?? 0) + 1);
    }
    return out;
  }

  private render(): void {
    const s = this.server.status;
    const counts = this.counts();
    const loras = this.store.result ? this.store.loras().length : s.loras;
    const parts = ORDER.filter((b) => counts.get(b)).map((b) => `${counts.get(b)} ${b}`);
    const tip = new MarkdownString('', true);
    tip.isTrusted = {
      enabledCommands: ['loraSync.openLog', 'loraSync.restartServer', 'loraSync.copyMap.focus', 'loraSync.syncAll'],
    };
    if (s.state === 'error') {
      this.item.text = '$(error) LoRA Sync';
      this.item.backgroundColor = new ThemeColor('statusBarItem.errorBackground');
      tip.appendMarkdown('**LoRA Sync: error**\n\n').appendText(`${s.message ?? 'The server reported an error.'}\n\n`);
    } else {
      const icon = s.state === 'working' || s.state === 'starting' ? '$(sync~spin)' : '$(sync)';
      this.item.text = [`${icon} LoRA ${loras}`, ...parts.slice(0, IN_TEXT)].join(' · ');
      this.item.backgroundColor = undefined;
      tip.appendMarkdown(
        `**LoRA Sync** · ${s.state}\n\n${loras} LoRAs in ${s.folders} folder${s.folders === 1 ? '' : 's'}\n\n`,
      );
      if (parts.length) tip.appendMarkdown(`${parts.map((p) => `- ${p}`).join('\n')}\n\n`);
      else if (this.store.result) tip.appendMarkdown('Every copy is in sync.\n\n');
      // VERSION files are sound (no bucket, no badge): counted here only so they are not a mystery.
      const versions = this.store.files().filter((f) => f.report.status === 'VERSION').length;
      if (versions) tip.appendMarkdown(`${versions} earlier version${versions === 1 ? '' : 's'} kept\n\n`);
    }
    tip.appendMarkdown(
      '[Copy Map](command:loraSync.copyMap.focus) · [Open Log](command:loraSync.openLog) · [Restart Server](command:loraSync.restartServer)',
    );
    this.item.tooltip = tip;
  }

  dispose(): void {
    for (const d of this.disposables) d.dispose();
  }
}
