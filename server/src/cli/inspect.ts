/** `lora-sync inspect FILE [--json]`: what a checkpoint holds, whether it is intact and safe to load. */
import { openCheckpoint, type Checkpoint } from '../formats/checkpoint';
import { fingerprintCheckpoint, type CheckpointFingerprint, DIGEST_ALG } from '../formats/fingerprint';
import { hashBackend } from '../formats/hashBackend';
import { isFormatError } from '../formats/errors';
import { beyondWeightsOnly } from '../formats/safety';
import { toJson, type Json, JsonFloat, stringifyJson } from '../formats/pyValue';
import type { PyNode } from '../formats/pickle/nodes';
import { fileHashes } from '../engine/fileHashes';
import type { InspectHashes } from '../protocol/inspect';
import { thousands } from '../protocol/thousands';

export interface InspectReport {
  file: string;
  sound: boolean;
  format?: string;
  size?: number;
  prefix?: string;
  version?: string;
  records?: Array<{ name: string; size: number; crc32: string }>;
  crc?: { checked: boolean; ok: boolean; failures: Array<{ record: string; expected: string; actual: string }> };
  safety?: {
    safe: boolean;
    globals: string[];
    unsafe: Array<{ global: string; detail: string }>;
    /** Data-only globals torch's default `torch.load` (weights_only, torch 2.6+) refuses unless allowed. */
    beyond_weights_only?: string[];
  };
  digest_alg?: string;
  /** Which hashers computed the digests: 'native' or 'portable' (same values either way). */
  hash_backend?: string;
  tensors?: Array<{
    path: string;
    dtype: string;
    shape: number[];
    bytes: number;
    digest: string;
    parameter?: boolean;
    requires_grad?: boolean;
    contiguous: boolean;
  }>;
  metadata?: Json;
  /** Storages outside any plain tensor (quantized...): listed, not digested; a scan leaves the file alone. */
  other_storages?: Array<{ path: string; key: string; held_by?: string }>;
  /** The ecosystem's hashes of the file (layouts/ecosystemHashes.ts), and embedded ones that disagree. */
  hashes?: InspectHashes;
  error?: { code: string; message: string };
}

const hex32 = (n: number) => n.toString(16).padStart(8, '0');

export async function inspectFile(path: string, display: string = path): Promise<InspectReport> {
  let c: Checkpoint;
  try {
    c = await openCheckpoint(path);
  } catch (e) {
    if (!isFormatError(e)) throw e;
    const r: InspectReport = { file: display, sound: false, error: { code: e.code, message: e.message } };
    // The safety scan does not need a readable file: what it found outranks the error.
    if (e.unsafe?.length)
      r.safety = { safe: false, globals: [], unsafe: e.unsafe.map((u) => ({ global: u.global, detail: u.detail })) };
    return r;
  }
  try {
    let fp: CheckpointFingerprint;
    try {
      fp = await fingerprintCheckpoint(c);
    } catch (e) {
      if (isFormatError(e))
        return {
          file: display,
          sound: false,
          format: c.format,
          size: c.fileSize,
          error: { code: e.code, message: e.message },
        };
      throw e;
    }
    const byNode = new Map<PyNode, Json>();
    c.tensors.forEach((t, i) => {
      if (t.node)
        byNode.set(t.wrapper ?? t.node, {
          [t.parameter ? '$parameter' : '$tensor']: { dtype: t.dtype, shape: t.shape, digest: fp.tensors[i].digest },
        });
    });
    const metadata: Json = c.root ? toJson(c.root, (n) => byNode.get(n)) : (c.safetensorsMetadata ?? null);
    const crcOk = fp.crcFailures.length === 0;
    const beyond = c.unsafe.length ? [] : beyondWeightsOnly(c.globals);
    return {
      file: display,
      sound: crcOk && c.unsafe.length === 0,
      format: c.format,
      size: c.fileSize,
      prefix: c.prefix,
      version: c.version,
      records: c.records?.map((r) => ({ name: r.name, size: r.size, crc32: hex32(r.crc32) })),
      crc: {
        checked: fp.crcChecked,
        ok: crcOk,
        failures: fp.crcFailures.map((f) => ({
          record: f.record,
          expected: hex32(f.expected),
          actual: hex32(f.actual),
        })),
      },
      safety: {
        safe: c.unsafe.length === 0,
        globals: c.globals.map((g) => `${g.module}.${g.name}`),
        unsafe: c.unsafe.map((u) => ({ global: u.global, detail: u.detail })),
        ...(beyond.length ? { beyond_weights_only: beyond } : {}),
      },
      digest_alg: DIGEST_ALG,
      hash_backend: hashBackend().name,
      tensors: c.tensors.map((t, i) => ({
        path: t.path,
        dtype: t.dtype,
        shape: t.shape,
        bytes: t.byteLength,
        digest: fp.tensors[i].digest,
        contiguous: t.contiguous,
        ...(t.parameter ? { parameter: true } : {}),
        ...(t.requiresGrad ? { requires_grad: true } : {}),
      })),
      metadata,
      ...(c.strays?.length
        ? {
            other_storages: c.strays.map((x) => ({
              path: x.path,
              key: x.key,
              ...(x.heldBy ? { held_by: x.heldBy } : {}),
            })),
          }
        : {}),
      hashes: await fileHashes(path),
    };
  } finally {
    await c.close();
  }
}

const FORMAT_NAMES: Record<string, string> = {
  'torch-zip': 'torch zip checkpoint',
  'torch-legacy': 'legacy torch checkpoint (pre-1.6 format)',
  torchscript: 'TorchScript archive',
  safetensors: 'safetensors file',
};

export function formatInspect(r: InspectReport): string {
  const lines: string[] = [];
  if (r.error && r.safety && !r.safety.safe) {
    lines.push(`${r.file}: UNSAFE — torch.load would run code from this file`);
    for (const u of r.safety.unsafe) lines.push(`    ${u.global}: ${u.detail}`);
    lines.push(`  it also cannot be read (${r.error.code}): ${r.error.message}`);
    return lines.join('\n');
  }
  if (r.error) {
    lines.push(`${r.file}: CORRUPT (${r.error.code})`, `  ${r.error.message}`);
    return lines.join('\n');
  }
  lines.push(`${r.file}: ${FORMAT_NAMES[r.format!] ?? r.format}, ${thousands(r.size!)} bytes`);
  if (r.prefix !== undefined)
    lines.push(`  archive folder: ${r.prefix}/  version: ${r.version}  records: ${r.records!.length}`);
  if (r.crc!.checked) {
    lines.push(r.crc!.ok ? '  CRC32: all records good' : `  CRC32: ${r.crc!.failures.length} record(s) damaged`);
    for (const f of r.crc!.failures) lines.push(`    ${f.record}: stored ${f.expected}, computed ${f.actual}`);
  } else lines.push('  CRC32: this format has none');
  if (r.hashes) {
    const h = r.hashes;
    lines.push(
      `  hashes: AutoV2 ${h.autoV2.toUpperCase()}${h.autoV3 ? `, AutoV3 ${h.autoV3.toUpperCase()}` : ''}${h.legacyWindowBytes === 65536 ? `, legacy ${h.legacy}` : ''}`,
    );
    for (const m of h.embeddedMismatches) lines.push(`    embedded hash mismatch: ${m.detail}`);
  }
  if (r.safety!.safe) {
    lines.push(`  safety: sound (${r.safety!.globals.length} data-only globals)`);
    if (r.safety!.beyond_weights_only?.length)
      lines.push(
        `    but torch 2.6+'s default torch.load (weights_only=True) refuses ${r.safety!.beyond_weights_only.join(', ')}: allow them with torch.serialization.add_safe_globals, or pass weights_only=False for this trusted file`,
      );
  } else {
    lines.push(`  safety: UNSAFE — torch.load would run code from this file`);
    for (const u of r.safety!.unsafe) lines.push(`    ${u.global}`);
  }
  lines.push(`  tensors (${r.tensors!.length}, digests ${r.digest_alg}):`);
  const w = Math.max(4, ...r.tensors!.map((t) => t.path.length));
  for (const t of r.tensors!) {
    const flags = [t.parameter ? 'Parameter' : '', t.requires_grad ? 'requires_grad' : '', t.contiguous ? '' : 'view']
      .filter(Boolean)
      .join(',');
    lines.push(
      `    ${(t.path || '<root>').padEnd(w)}  ${t.dtype.padEnd(8)}  [${t.shape.join(', ')}]  ${t.bytes} B  ${t.digest.slice(0, 16)}${flags ? `  ${flags}` : ''}`,
    );
  }
  if (r.other_storages?.length) {
    lines.push(
      `  other storages (${r.other_storages.length}): not digested; LoRA Sync neither compares nor copies this file`,
    );
    for (const o of r.other_storages)
      lines.push(`    data/${o.key} at ${o.path || '<root>'}${o.held_by ? ` (${o.held_by})` : ''}`);
  }
  lines.push('  metadata:');
  lines.push(
    stringifyJson(shortTensors(r.metadata ?? null), 2, 72)
      .split('\n')
      .map((l) => `    ${l}`)
      .join('\n'),
  );
  lines.push(r.sound ? 'sound' : 'NOT SOUND');
  return lines.join('\n');
}

/** For people: a tensor inside the metadata reads `<float32 [8, 16] 2e823c27f109ae3e>`. */
function shortTensors(v: Json): Json {
  if (Array.isArray(v)) return v.map(shortTensors);
  if (v && typeof v === 'object' && !(v instanceof JsonFloat)) {
    const o = v as { [k: string]: Json };
    const t = (o.$tensor ?? o.$parameter) as { dtype: string; shape: number[]; digest: string } | undefined;
    if (t && Object.keys(o).length === 1)
      return `<${o.$parameter ? 'Parameter ' : ''}${t.dtype} [${t.shape.join(', ')}] ${t.digest.slice(0, 16)}>`;
    if (o.constructor !== Object) return v;
    return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, shortTensors(x)]));
  }
  return v;
}
