/**
 * Engine options: defaults that fit the seed's layout out of the box, overridden by an optional
 * `lora-sync.json` at the workspace root (and, in VS Code, by `loraSync.*` settings mapped onto
 * the same names).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Settings } from '../protocol/messages';

/**
 * The engine's options: the keys of `lora-sync.json`, which the `loraSync.*` settings mirror one for
 * one, so one type (documented key by key in protocol/messages.ts) serves both.
 */
export type EngineConfig = Settings;

export const DEFAULT_CONFIG: EngineConfig = {
  // Every extension torch and safetensors checkpoints come in (PEFT's adapter_model.bin, kohya's .ckpt).
  include: ['**/*.pt', '**/*.pth', '**/*.bin', '**/*.ckpt', '**/*.safetensors'],
  exclude: ['**/.git/**', '**/node_modules/**', '**/.lora-sync/**'],
  sourceFolders: ['AKTIF_EN_IYILER'],
  copyKeys: ['team', 'specialization_key', 'score', 'match_count', 'exported_at'],
  ignoreKeys: ['sync_info'],
  backups: true,
  autoSync: 'off',
  fullSyncEvery: 0,
  debounceMs: 300,
  settleMs: 1000,
  reconcileSeconds: 300,
};

export const CONFIG_FILE = 'lora-sync.json';
/** Folder for the engine's own state: index cache, history, locks, backups. */
export const STATE_DIR = '.lora-sync';

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

/** Validates a partial config object (from the file or from settings); unknown keys are errors, so typos show. */
export function mergeConfig(base: EngineConfig, patch: unknown, where: string): EngineConfig {
  if (patch === undefined || patch === null) return base;
  if (typeof patch !== 'object' || Array.isArray(patch)) throw new ConfigError(`${where}: expected an object`);
  const out: EngineConfig = { ...base };
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    switch (k) {
      case 'include':
      case 'exclude':
      case 'sourceFolders':
      case 'copyKeys':
      case 'ignoreKeys':
        if (!isStringArray(v)) throw new ConfigError(`${where}: "${k}" must be a list of strings`);
        out[k] = v.map((s) => s.normalize('NFC'));
        break;
      case 'backups':
        if (typeof v !== 'boolean') throw new ConfigError(`${where}: "backups" must be true or false`);
        out.backups = v;
        break;
      case 'autoSync':
        if (v !== 'off' && v !== 'onSourceChange')
          throw new ConfigError(`${where}: "autoSync" must be "off" or "onSourceChange"`);
        out.autoSync = v;
        break;
      case 'fullSyncEvery':
      case 'debounceMs':
      case 'settleMs':
      case 'reconcileSeconds':
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 0)
          throw new ConfigError(`${where}: "${k}" must be a whole number ≥ 0`);
        out[k] = v;
        break;
      case '$schema':
        break;
      default:
        throw new ConfigError(`${where}: unknown option "${k}" (known: ${Object.keys(DEFAULT_CONFIG).join(', ')})`);
    }
  }
  if (out.sourceFolders.some((s) => s === ''))
    throw new ConfigError(`${where}: "sourceFolders" entries must not be empty`);
  return out;
}

/** Defaults, then `lora-sync.json` if present, then `overrides` (settings). */
export async function loadConfig(root: string, overrides?: unknown): Promise<EngineConfig> {
  let cfg = DEFAULT_CONFIG;
  let text: string | undefined;
  try {
    text = await readFile(join(root, CONFIG_FILE), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (text !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      throw new ConfigError(`${CONFIG_FILE}: not valid JSON (${(e as Error).message})`);
    }
    cfg = mergeConfig(cfg, parsed, CONFIG_FILE);
  }
  return mergeConfig(cfg, overrides, 'settings');
}
