/** Which LoRA a command acts on: a tree node, an id or name (tests, keybindings), or a QuickPick. */
import { type QuickPickItem, window } from 'vscode';
import type { CopyMapStore } from './copyMapStore';

/** What LoRA commands accept as their first argument. */
export type LoraArg =
  | string
  | { lora: string; folder?: string }
  | { kind: 'lora'; folder: string; lora: { id: string } }
  | undefined;

export interface LoraTarget {
  lora: string;
  folder?: string;
}

export function targetFromArg(arg: LoraArg): LoraTarget | undefined {
  if (!arg) return undefined;
  if (typeof arg === 'string') return { lora: arg };
  if ('kind' in arg) return { lora: arg.lora.id, folder: arg.folder };
  return arg;
}

export async function pickLora(store: CopyMapStore, title: string): Promise<LoraTarget | undefined> {
  const result = store.result ?? (await store.refresh());
  const loras = store.loras();
  if (!result || !loras.length) {
    void window.showInformationMessage('LoRA Sync: no LoRAs found in this workspace.');
    return undefined;
  }
  const multi = result.folders.length > 1;
  type Item = QuickPickItem & { target: LoraTarget };
  const items: Item[] = loras
    .sort((a, b) => Number(b.lora.problems > 0) - Number(a.lora.problems > 0) || a.lora.name.localeCompare(b.lora.name))
    .map(({ lora, folder, folderName }) => ({
      label: `${lora.problems ? '$(warning)' : '$(pass)'} ${lora.name}`,
      description: `${lora.id} · ${lora.problems ? `${lora.problems} problem${lora.problems === 1 ? '' : 's'}` : 'in sync'} · ${lora.copies.length} copies`,
      detail: multi ? folderName : undefined,
      target: { lora: lora.id, folder },
    }));
  const picked = await window.showQuickPick(items, { title, matchOnDescription: true, placeHolder: 'LoRA name or id' });
  return picked?.target;
}
