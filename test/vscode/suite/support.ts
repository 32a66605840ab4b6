/** Helpers the extension-host suites share (bundled into each suite by scripts/build.mjs). */
import { strict as assert } from 'node:assert';
import { relative, sep } from 'node:path';
import * as vscode from 'vscode';
import type { ServerStatus } from '../../../server/src/protocol/messages';

export const root = (): string => vscode.workspace.workspaceFolders![0].uri.fsPath;
export const nfc = (s: string) => s.normalize('NFC');
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it gives something other than undefined or false. */
export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 30_000,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(100);
  }
}

/** Our diagnostics on checkpoint files, as NFC workspace-relative path → diagnostic (one per file). */
export function ourDiagnostics(): Map<string, vscode.Diagnostic> {
  const out = new Map<string, vscode.Diagnostic>();
  for (const [uri, diags] of vscode.languages.getDiagnostics()) {
    if (!/\.(pt|pth|bin|ckpt|safetensors)$/i.test(uri.fsPath)) continue;
    const ours = diags.filter((d) => d.source === 'lora-sync');
    assert.ok(ours.length <= 1, `one diagnostic per file: ${uri.fsPath} has ${ours.length}`);
    if (ours.length) out.set(nfc(relative(root(), uri.fsPath).split(sep).join('/')), ours[0]);
  }
  return out;
}

export const codeOf = (d: vscode.Diagnostic): string => String(typeof d.code === 'object' ? d.code.value : d.code);

/** Activates the extension and waits for its server's first scan to find LoRAs. */
export async function activateAndWaitReady(): Promise<ServerStatus> {
  const ext = vscode.extensions.getExtension('lora-sync.lora-sync');
  assert.ok(ext, 'the extension is installed');
  await ext.activate();
  assert.equal(ext.isActive, true);
  return waitFor(
    'the server to be ready',
    async () => {
      const s = await vscode.commands.executeCommand<ServerStatus>('loraSync.getServerStatus');
      return s.state === 'ready' && s.loras > 0 ? s : undefined;
    },
    60_000,
  );
}
