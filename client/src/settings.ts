/**
 * The `loraSync.*` settings the server receives. Only values the user set (user, workspace or
 * folder) are sent, never the contributed defaults: settings override `lora-sync.json`, so a
 * default sent as if chosen would silently beat the file.
 */
import { type Uri, workspace } from 'vscode';
import { SETTING_KEYS, type Settings } from '../../server/src/protocol/messages';

export const SECTION = 'loraSync';

export type EngineSettings = Partial<Settings>;

/** The explicitly set values for `scope` (a folder or file URI; undefined: the window), most specific first. */
export function explicitSettings(scope?: Uri): EngineSettings {
  const config = workspace.getConfiguration(SECTION, scope);
  const out: Record<string, unknown> = {};
  for (const key of SETTING_KEYS) {
    const i = config.inspect(key);
    if (!i) continue;
    const value = i.workspaceFolderValue ?? i.workspaceValue ?? i.globalValue;
    if (value !== undefined) out[key] = value;
  }
  // An untrusted workspace must never write on its own (the server's read-only flag says so too).
  if (!workspace.isTrusted) out.autoSync = 'off';
  return out as EngineSettings;
}

/** Whether the user turned backups off for this scope (lora-sync.json may too; the server knows). */
export function backupsOff(scope?: Uri): boolean {
  return explicitSettings(scope).backups === false;
}
