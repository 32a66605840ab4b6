/**
 * The `loraSync.*` settings the server receives. Only values the user set (user, workspace or
 * folder) are sent, never the contributed defaults: settings override `lora-sync.json`, so a
 * default sent as if chosen would silently beat the file.
 */
import { type Uri, workspace } from 'vscode';
import type { EngineConfig } from '../../server/src/engine/config';

export const SECTION = 'loraSync';

/** Every engine option, mirrored as a `loraSync.<key>` setting. */
export const ENGINE_KEYS = [
  'include',
  'exclude',
  'sourceFolders',
  'copyKeys',
  'ignoreKeys',
  'backups',
  'autoSync',
  'fullSyncEvery',
  'debounceMs',
  'settleMs',
  'reconcileSeconds',
] as const satisfies ReadonlyArray<keyof EngineConfig>;

export type EngineSettings = Partial<EngineConfig>;

/** The explicitly set values for `scope` (a folder or file URI; undefined: the window), most specific first. */
export function explicitSettings(scope?: Uri): EngineSettings {
  const config = workspace.getConfiguration(SECTION, scope);
  const out: Record<string, unknown> = {};
  for (const key of ENGINE_KEYS) {
    const i = config.inspect(key);
    if (!i) continue;
    const value = i.workspaceFolderValue ?? i.workspaceValue ?? i.globalValue;
    if (value !== undefined) out[key] = value;
  }
  // An untrusted workspace must never write on its own: the server has no read-only flag yet.
  if (!workspace.isTrusted) out.autoSync = 'off';
  return out as EngineSettings;
}

/** Whether the user turned backups off for this scope (lora-sync.json may too; the server knows). */
export function backupsOff(scope?: Uri): boolean {
  return explicitSettings(scope).backups === false;
}
