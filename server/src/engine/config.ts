/**
 * Engine options: defaults that fit the seed's layout out of the box, overridden by an optional
 * `lora-sync.json` at the workspace root (and, in VS Code, by `loraSync.*` settings mapped onto
 * the same names).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Settings } from '../protocol/messages';
import configSchema from '../../../schemas/lora-sync.schema.json';
import validateConfig, { type SchemaError } from './configValidator.generated';

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

/**
 * Validates a partial config object (from the file or from settings) against
 * schemas/lora-sync.schema.json, the schema VS Code uses while the file is edited, through the
 * validator generated from it at build time: the editor and the engine cannot disagree. Unknown keys
 * are errors, so typos show. Messages say which key and what it should be.
 */
export function mergeConfig(base: EngineConfig, patch: unknown, where: string): EngineConfig {
  if (patch === undefined || patch === null) return base;
  if (!validateConfig(patch)) throw new ConfigError(`${where}: ${describeErrors(validateConfig.errors ?? [])}`);
  const out: EngineConfig = { ...base };
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (k === '$schema') continue;
    // Paths and folder names are compared in NFC, as every path is keyed.
    (out as unknown as Record<string, unknown>)[k] = Array.isArray(v) ? v.map((s: string) => s.normalize('NFC')) : v;
  }
  return out;
}

type PropSchema = { type?: string; enum?: string[]; minimum?: number; items?: { type?: string } };
const PROPS = (configSchema as { properties: Record<string, PropSchema> }).properties;

/** What a key's value must be, in words, from its schema. */
function expected(key: string): string {
  const p = PROPS[key];
  if (!p) return 'valid';
  if (p.enum) return p.enum.map((e) => `"${e}"`).join(' or ');
  if (p.type === 'array') return `a list of ${p.items?.type ?? 'value'}s`;
  if (p.type === 'boolean') return 'true or false';
  if (p.type === 'integer') return `a whole number${p.minimum !== undefined ? ` ≥ ${p.minimum}` : ''}`;
  return `a ${p.type}`;
}

/** The schema's errors as today's sentences, one per key (ajv may report several per key). */
export function describeErrors(errors: readonly SchemaError[]): string {
  const known = Object.keys(DEFAULT_CONFIG).join(', ');
  const out = new Set<string>();
  for (const e of errors) {
    const [key, item] = e.instancePath.split('/').slice(1);
    if (e.keyword === 'additionalProperties')
      out.add(`unknown option "${e.params.additionalProperty}" (known: ${known})`);
    else if (!key) out.add('expected an object');
    else if (item !== undefined && e.keyword === 'minLength') out.add(`"${key}" entries must not be empty`);
    else out.add(`"${key}" must be ${expected(key)}`);
  }
  return [...out].join('; ');
}

/** Defaults, then `lora-sync.json` if present, then `overrides` (settings). */
export async function loadConfig(root: string, overrides?: unknown): Promise<EngineConfig> {
  let cfg = DEFAULT_CONFIG;
  let text: string | undefined;
  try {
    // A byte-order mark (Notepad and some Windows editors write one) is not JSON's: left out.
    text = (await readFile(join(root, CONFIG_FILE), 'utf8')).replace(/^\uFEFF/, '');
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
