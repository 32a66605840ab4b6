/**
 * What readEntry learns of a file besides its checkpoint: whether it is a git-lfs pointer, what the
 * layout recognizers need of its folder (a PEFT or diffusers unit's listing and adapter_config.json),
 * and which embedded ecosystem hashes disagree with its bytes. Each costs I/O only for the files it
 * concerns, so the cold scan of the others costs nothing more.
 */
import { open, readdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Checkpoint } from '../formats/checkpoint';
import type { FolderFacts } from '../layouts/describe';
import { createHash } from 'node:crypto';
import { safetensorsCodeOf } from '../formats/dtypes';
import { readAhead, readFull } from '../io/readAhead';
import {
  checkEmbeddedHashes,
  EMBEDDED_KEYS,
  fileDataReader,
  kohyaLegacyHash,
  type TensorSpan,
} from '../layouts/ecosystemHashes';
import { LFS_POINTER_MAX_BYTES, lfsPointerIssue, parseLfsPointer } from '../layouts/lfsPointer';
import type { FileEntry } from './fileEntry';
import { configDigestOf, MAX_CONFIG_BYTES } from './unitFiles';

const CHUNK = 1 << 20;

/**
 * The error of a tiny file (at most LFS_POINTER_MAX_BYTES: the caller checks the size) that is a
 * git-lfs pointer in place of the checkpoint (a clone without `git lfs pull`), else undefined.
 */
export async function lfsPointerError(abs: string, rel: string): Promise<FileEntry['error']> {
  const lfs = await lfsPointerAt(abs);
  return lfs ? { code: 'LFS_POINTER', message: lfsPointerIssue(rel, lfs).detail } : undefined;
}

/** The pointer a tiny file holds, if it is a git-lfs pointer. */
async function lfsPointerAt(abs: string) {
  const fh = await open(abs, 'r');
  try {
    const buf = Buffer.alloc(LFS_POINTER_MAX_BYTES + 1);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return parseLfsPointer(buf.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}

/** Files whose folder is their unit: PEFT's `adapter_model.*`, diffusers' `pytorch_lora_weights.*`. */
const FOLDER_UNIT_FILE = /^(adapter_model|pytorch_lora_weights)\.(safetensors|bin)$/;
const ADAPTER_CONFIG = 'adapter_config.json';

/** A folder's facts, with the key (`sideKey`) and byte digest (`configDigest`) of its adapter_config.json. */
export type UnitFolderFacts = FolderFacts & { sideKey?: string; configDigest?: string };

/**
 * What the recognizers need of the file's folder. Only folder units need it (the folder listing and
 * adapter_config.json): other files cost no extra I/O. `sideKey` keys the config for the cache.
 */
export async function folderFactsOf(abs: string, rel: string): Promise<UnitFolderFacts> {
  const name = rel.slice(rel.lastIndexOf('/') + 1);
  if (!FOLDER_UNIT_FILE.test(name)) return { siblings: [] };
  const dir = dirname(abs);
  const siblings = await readdir(dir).catch(() => [] as string[]);
  if (!siblings.includes(ADAPTER_CONFIG)) return { siblings, sideKey: 'none' };
  try {
    const fh = await open(`${dir}/${ADAPTER_CONFIG}`, 'r');
    try {
      const st = await fh.stat({ bigint: true });
      const sideKey = `${st.size}:${st.mtimeNs}:${st.ino}`;
      if (st.size > BigInt(MAX_CONFIG_BYTES)) return { siblings, sideKey };
      const bytes = await fh.readFile();
      return { siblings, adapterConfigText: bytes.toString('utf8'), sideKey, configDigest: configDigestOf(bytes) };
    } finally {
      await fh.close();
    }
  } catch {
    return { siblings, sideKey: 'none' };
  }
}

/**
 * Embedded ecosystem hashes that disagree with the file, judged on the checkpoint already open: only
 * safetensors files that embed one pay, and only for what their keys need (the data section's SHA-256
 * for `sshs_model_hash` / `modelspec.hash_sha256`, one pass with the next read in flight; kohya's
 * legacy hash reads a 64 KiB window). AutoV2, the whole file's hash, is never computed in a scan.
 */
export async function hashIssuesOf(c: Checkpoint): Promise<FileEntry['hashIssues']> {
  const md = c.format === 'safetensors' ? c.safetensorsMetadata : undefined;
  const has = (k: string) => (md?.[k] ?? '').trim() !== '';
  if (!md || !EMBEDDED_KEYS.some(has)) return undefined;
  const ended = (at: number) => new Error(`${c.path} ended at byte ${at} while it was hashed`);
  const head = await readFull(c.fh, Buffer.alloc(8), 0, ended);
  const dataStart = 8 + Number(head.readBigUInt64LE(0));
  let dataSha256: string | undefined;
  if (has('sshs_model_hash') || has('modelspec.hash_sha256')) {
    const h = createHash('sha256');
    const bufs: [Buffer, Buffer] = [Buffer.allocUnsafe(CHUNK), Buffer.allocUnsafe(CHUNK)];
    for await (const chunk of readAhead(c.fh, dataStart, c.fileSize - dataStart, bufs, ended)) h.update(chunk);
    dataSha256 = h.digest('hex');
  }
  let kohyaLegacy: string | undefined;
  if (has('sshs_legacy_hash')) {
    const spans: TensorSpan[] = c.tensors.map((t) => ({
      name: t.path,
      dtype: safetensorsCodeOf(t.dtype)!,
      shape: t.shape,
      begin: t.storage.offset - dataStart,
      end: t.storage.offset + t.byteLength - dataStart,
    }));
    const legacy = await kohyaLegacyHash(md, spans, fileDataReader(c.fh, dataStart));
    kohyaLegacy = 'value' in legacy ? legacy.value : undefined;
  }
  const issues = checkEmbeddedHashes(md, { dataSha256, kohyaLegacy });
  return issues.length ? issues.map((i) => ({ key: i.key, detail: i.detail })) : undefined;
}
