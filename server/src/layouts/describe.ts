/**
 * The recognizers' input from an open checkpoint: tensor names, `__metadata__` and the pickle's
 * top level are already in memory once the header is read, so this costs no extra I/O. The folder
 * listing and `adapter_config.json` come from the caller (a scan has the listing anyway).
 */
import type { Checkpoint } from '../formats/checkpoint';
import { getKey, mappingEntries, type PyNode } from '../formats/pickle/nodes';
import type { LayoutInput, TorchTop } from './types';

export interface FolderFacts {
  /** Names of the entries in the file's folder. */
  siblings: readonly string[];
  /** `adapter_config.json`'s text when the folder has one (parsed here; bad JSON counts as absent). */
  adapterConfigText?: string;
}

export function describeCheckpoint(c: Checkpoint, relPath: string, folder: FolderFacts): LayoutInput {
  return {
    path: relPath,
    format: c.format,
    tensorNames: c.tensors.map((t) => t.path),
    metadata: c.safetensorsMetadata ?? null,
    torchTop: c.format === 'safetensors' ? undefined : torchTopOf(c),
    siblings: folder.siblings,
    adapterConfig: parseJson(folder.adapterConfigText),
  };
}

function torchTopOf(c: Checkpoint): TorchTop {
  const root = c.root;
  const entries = root ? mappingEntries(root) : undefined;
  if (!root || !entries) return { kind: 'other' };
  const params = getKey(root, 'lora_params');
  const meta = getKey(root, 'metadata');
  const id = meta ? text(getKey(meta, 'id')) : undefined;
  if (params || id) return { kind: 'seed', id, name: meta ? text(getKey(meta, 'name')) : undefined };
  // torch.save(state_dict): every value a tensor (or Parameter); keys are the tensor names.
  const tensorPaths = new Set(c.tensors.map((t) => t.path));
  const keys = entries.map(([k]) => (k.kind === 'str' ? k.value : k.kind === 'int' ? k.value.toString() : '?'));
  if (keys.length > 0 && keys.every((k) => tensorPaths.has(k))) return { kind: 'state-dict' };
  return { kind: 'dict', keys };
}

function text(n: PyNode | undefined): string | undefined {
  if (n?.kind === 'str') return n.value;
  if (n?.kind === 'int') return n.value.toString();
  return undefined;
}

function parseJson(s: string | undefined): unknown {
  if (s === undefined) return undefined;
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}
