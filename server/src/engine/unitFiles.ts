/**
 * What a sync writes as one: a file, or (PEFT, diffusers) the folder holding the weights and
 * `adapter_config.json`. The config is the folder unit's general metadata: a copy whose config differs
 * from its source's is METADATA_DRIFT, and a sync brings it over byte for byte (PEFT configs have no
 * per-copy keys). Nothing else in the folder is the unit's: README.md, A1111's notes and previews,
 * a Trainer's optimizer, scheduler and RNG files are never read or written here.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { FileEntry } from './fileEntry';

/** The weights file names that make their folder the unit (PEFT, diffusers). */
const FOLDER_WEIGHTS = new Set([
  'adapter_model.safetensors',
  'adapter_model.bin',
  'pytorch_lora_weights.safetensors',
  'pytorch_lora_weights.bin',
]);

export const UNIT_CONFIG = 'adapter_config.json';
/**
 * The config's keys in an entry's `metaKeys`: `adapter_config.<key>` one per top-level key, or
 * `adapter_config.json` for a config that is not a JSON object (loraFile.ts adapterConfigKeys).
 */
export const isUnitConfigKey = (k: string) => k === UNIT_CONFIG || k.startsWith('adapter_config.');
/** Larger than any real adapter config (PEFT writes a few kB): a file past this is not read (and so never copied). */
export const MAX_CONFIG_BYTES = 1 << 20;

const baseOf = (p: string) => p.slice(p.lastIndexOf('/') + 1);

/** The unit of an entry: what the layout wiring set, else from the weights' file name (the same rule the PEFT and diffusers recognizers use). */
export function unitOf(e: { path: string; unit?: FileEntry['unit'] }): { kind: 'file' | 'folder'; path: string } {
  if (e.unit) return e.unit;
  if (FOLDER_WEIGHTS.has(baseOf(e.path))) {
    const i = e.path.lastIndexOf('/');
    return { kind: 'folder', path: i < 0 ? '' : e.path.slice(0, i) };
  }
  return { kind: 'file', path: e.path };
}

/**
 * A folder unit's name: its folder's, or for a Trainer's `checkpoint-<step>/` the folder above it (as
 * layouts/peft.ts names it). undefined for a file unit.
 */
export function unitName(rel: string): string | undefined {
  const u = unitOf({ path: rel });
  if (u.kind !== 'folder' || !u.path) return undefined;
  const parts = u.path.split('/');
  const last = parts[parts.length - 1];
  return /^checkpoint-\d+$/.test(last) && parts.length > 1 ? parts[parts.length - 2] : last;
}

/** A Trainer's `checkpoint-<step>/` folder (or one inside it): a training version, never a sync target. */
export function inTrainerCheckpoint(rel: string): boolean {
  return /(^|\/)checkpoint-\d+\//.test(rel);
}

export const configDigestOf = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex').slice(0, 16);

/** The config beside a weights file (absolute path): its bytes and digest, or undefined when there is none. */
export async function unitConfigAt(weightsAbs: string): Promise<{ bytes: Buffer; digest: string } | undefined> {
  const p = join(dirname(weightsAbs), UNIT_CONFIG);
  let bytes: Buffer;
  try {
    const fh = await open(p, 'r');
    try {
      const st = await fh.stat();
      if (!st.isFile() || st.size > MAX_CONFIG_BYTES) return undefined;
      bytes = await fh.readFile();
    } finally {
      await fh.close();
    }
  } catch {
    return undefined;
  }
  return { bytes, digest: configDigestOf(bytes) };
}
