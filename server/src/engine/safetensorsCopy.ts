/**
 * What a safetensors copy is made of: the source's tensors in the source's data order (so the copy's
 * data section is byte-identical to the source's, and the data hashes the ecosystem shows agree),
 * the source's general `__metadata__`, the copy's own keys exactly, our `sync_info`, and the embedded
 * hashes (`sshs_model_hash`, `sshs_legacy_hash`, `modelspec.hash_sha256`) right for those bytes.
 * Pure apart from reading the source's data section (only when the metadata embeds a hash).
 */
import { createHash } from 'node:crypto';
import type { Checkpoint } from '../formats/checkpoint';
import { safetensorsCodeOf } from '../formats/dtypes';
import type { SafetensorsDtype, SafetensorsInput } from '../formats/safetensors';
import { readAhead, readFull } from '../io/readAhead';
import {
  EMBEDDED_KEYS,
  type EmbeddedKey,
  embeddedHashesFor,
  fileDataReader,
  type TensorSpan,
} from '../layouts/ecosystemHashes';
import type { EngineConfig } from './config';

export interface SafetensorsCopy {
  tensors: SafetensorsInput[];
  metadata: Record<string, string>;
  /** General metadata keys whose value in the copy differs from the source's on purpose (a corrected or dropped hash). */
  changedKeys: string[];
  /** What a user should know about this copy's metadata (a hash corrected or left out), one sentence each. */
  notes: string[];
}

const ended = (at: number) => new Error(`the source ended at byte ${at} while its data was hashed`);

/** 8 + the header length: where the source's data section starts. */
async function dataStartOf(src: Checkpoint): Promise<number> {
  const b = await readFull(src.fh, Buffer.alloc(8), 0, ended);
  return 8 + Number(b.readBigUInt64LE(0));
}

async function sha256Of(src: Checkpoint, from: number): Promise<string> {
  const h = createHash('sha256');
  const bufs: [Buffer, Buffer] = [Buffer.allocUnsafe(1 << 20), Buffer.allocUnsafe(1 << 20)];
  for await (const chunk of readAhead(src.fh, from, src.fileSize - from, bufs, ended)) h.update(chunk);
  return h.digest('hex');
}

/** Whether an embedded value is right for `right`: case and `0x` aside, equal or (8+ hex) a prefix, as checkEmbeddedHashes reads it. */
function claims(embedded: string, right: string): boolean {
  const norm = (v: string) => v.trim().toLowerCase().replace(/^0x/, '');
  const got = norm(embedded);
  return got.length >= 8 && /^[0-9a-f]+$/.test(got) && norm(right).startsWith(got);
}

/**
 * The copy of `src` for `copy`: `syncInfo` is our record (a JSON string). The copy's own keys win
 * over everything, hashes included: they are the copy's, kept exactly.
 */
export async function safetensorsCopyOf(
  src: Checkpoint,
  copy: Checkpoint,
  cfg: EngineConfig,
  syncInfo: string,
): Promise<SafetensorsCopy> {
  // Data order, not header order: a header may list tensors in any order, the bytes are what count.
  const ordered = [...src.tensors].sort((a, b) => a.storage.offset - b.storage.offset);
  const tensors: SafetensorsInput[] = ordered.map((t) => ({
    name: t.path,
    dtype: safetensorsCodeOf(t.dtype) as SafetensorsDtype,
    shape: t.shape,
    data: { fh: src.fh, offset: t.storage.offset, length: t.byteLength },
  }));
  const md: Record<string, string> = {};
  for (const [k, v] of Object.entries(src.safetensorsMetadata ?? {})) if (!cfg.copyKeys.includes(k)) md[k] = v;
  for (const [k, v] of Object.entries(copy.safetensorsMetadata ?? {})) if (cfg.copyKeys.includes(k)) md[k] = v;
  md.sync_info = syncInfo;
  const out: SafetensorsCopy = { tensors, metadata: md, changedKeys: [], notes: [] };
  const ours = EMBEDDED_KEYS.filter((k) => k in md && !cfg.copyKeys.includes(k));
  if (!ours.length) return out;
  const dataStart = await dataStartOf(src);
  const spans: TensorSpan[] = ordered.map((t, i) => ({
    name: t.path,
    dtype: tensors[i].dtype,
    shape: t.shape,
    begin: t.storage.offset - dataStart,
    end: t.storage.offset - dataStart + t.byteLength,
  }));
  const { values, cannot } = await embeddedHashesFor(md, {
    tensors: spans,
    sha256: await sha256Of(src, dataStart),
    read: fileDataReader(src.fh, dataStart),
  });
  for (const key of ours) {
    const right = values[key as EmbeddedKey];
    if (right !== undefined) {
      // An empty value claims nothing (checkEmbeddedHashes does not check it): left as the source has it.
      if (md[key].trim() === '' || claims(md[key], right)) continue;
      out.notes.push(
        `${key} corrected: the source says ${md[key].slice(0, 14)}, the data written is ${right.slice(0, 14)}`,
      );
      md[key] = right;
      out.changedKeys.push(key);
    } else {
      const why = cannot.find((c) => c.key === key)?.why ?? 'not computable';
      out.notes.push(`${key} left out: it cannot be computed for the data written (${why})`);
      delete md[key];
      out.changedKeys.push(key);
    }
  }
  return out;
}
