/**
 * The safety scan applied to a file the way torch.load reads it (docs/safety.md):
 * - a zip: its `<prefix>/data.pkl`, to the end of the record (bytes after the first STOP are scanned as
 *   further pickles and reported as trailing data);
 * - anything else whose first byte is a pickle opcode: torch.load takes it down the legacy path, which
 *   unpickles the magic number, the protocol version, the system info, the object and the storage
 *   keys in turn, each whatever the one before held. A file with the legacy header is scanned for those
 *   five (storage bytes follow, which torch never unpickles); any other is scanned pickle after pickle
 *   to its end (it is no checkpoint, and other loaders read on).
 * Findings never depend on whether the decoder can read the file.
 */
import type { FileHandle } from 'node:fs/promises';
import { type FormatError, isFormatError } from './errors';
import type { DecodedPickle } from './pickle/decoder';
import { OPCODE_NAMES } from './pickle/opcodes';
import { type PickleScan, scanPickles } from './pickle/safetyScan';
import { isAllowedGlobal, type SafetyFinding, scanFindings } from './safety';
import { looksLegacy } from './torch/legacy';

/** The pickles torch's legacy loader unpickles: magic number, protocol, sys_info, object, storage keys. */
export const LEGACY_PICKLES = 5;
/** The most of a non-zip file the scan reads (the decoder's own pickle bound is 256 MiB). */
const MAX_SCAN_BYTES = 512 * 1024 * 1024;

export interface StreamSafety {
  scan: PickleScan;
  findings: SafetyFinding[];
}

/** Whether torch.load would unpickle this file's first bytes (not a zip, its first byte an opcode). */
export function startsLikePickle(head: Uint8Array): boolean {
  return head.length > 0 && OPCODE_NAMES[head[0]] !== undefined;
}

export function scanDataPkl(bytes: Uint8Array, record: string): StreamSafety {
  const scan = scanPickles(bytes);
  return { scan, findings: scanFindings(scan, record) };
}

/**
 * Below this many bytes a pickle cannot reach the scan model's bounds (MODEL_LIMITS: every value,
 * MARK and memo entry takes at least one byte), so the scan never caps (a cap is itself a finding).
 */
const PLAIN_MAX_BYTES = 1 << 20;

/**
 * Whether a data.pkl that the decoder read whole is one the safety scan would find nothing in, so
 * the scan (a second walk over the same bytes) can be skipped: the decoder reached STOP at the last
 * byte (one pickle, nothing after it), every global it met is allowlisted, and every call calls a
 * GLOBAL node itself. Why that is enough: the scan's findings are names outside the allowlist (the
 * decoder meets every name the scan records: GLOBAL, INST, STACK_GLOBAL of two str), calls of what
 * it cannot name (EXT codes, which the decoder refuses; calls of a call's result, excluded here;
 * STACK_GLOBAL of a computed name, which the decoder refuses) and mutations of a global (BUILD,
 * APPEND(S), SETITEM(S), ADDITEMS on a global node, all of which the decoder refuses), and the cap
 * (excluded by size). Anything else (a decode error, a finding, trailing bytes) takes the scan as
 * before, which never depends on the decoder. The unit suite checks the claim against the scan on
 * every fixture and on thousands of corrupted pickles.
 */
export function plainlySafe(decoded: DecodedPickle, length: number): boolean {
  if (length >= PLAIN_MAX_BYTES || decoded.end !== length || !decoded.callsNamed) return false;
  for (const g of decoded.globals) if (!isAllowedGlobal(g)) return false;
  return true;
}

/**
 * Offset of the first byte after data.pkl's first pickle when bytes follow it, else undefined.
 * (Only meaningful when the pickle decoded: a broken pickle is reported as such.)
 */
export function trailingAfterFirst(scan: PickleScan, length: number): number | undefined {
  const first = scan.pickles[0];
  return first && first.end < length ? first.end : undefined;
}

/**
 * Scans a non-zip file as torch's legacy loader reads it. `bytes` is the whole file when the caller
 * has it; otherwise a window from the start is read and grown while a pickle runs past it.
 */
export async function scanLegacyStream(fh: FileHandle, size: number, bytes?: Uint8Array): Promise<StreamSafety> {
  let window = bytes ? bytes.length : Math.min(size, 1 << 20);
  for (;;) {
    const head = bytes ?? (await readHead(fh, window));
    const legacy = looksLegacy(head);
    const scan = scanPickles(head, { maxPickles: legacy ? LEGACY_PICKLES : Number.POSITIVE_INFINITY });
    const cut = scan.stuck?.truncated && head.length < size;
    if (!cut || bytes || window >= MAX_SCAN_BYTES) {
      const findings = scanFindings(scan, 'the file');
      if (cut)
        findings.push({
          type: 'UNSAFE_GLOBAL',
          global: `pickle over ${MAX_SCAN_BYTES} bytes`,
          detail: `a pickle runs past the first ${MAX_SCAN_BYTES} bytes, which is all the safety scan reads: what it imports cannot be checked`,
        });
      return { scan, findings };
    }
    window = Math.min(size, window * 4, MAX_SCAN_BYTES);
  }
}

async function readHead(fh: FileHandle, len: number): Promise<Buffer> {
  const buf = Buffer.alloc(len);
  let got = 0;
  while (got < len) {
    const { bytesRead } = await fh.read(buf, got, len - got, got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got === len ? buf : buf.subarray(0, got);
}

/**
 * A zip our reader refused (overlaps, duplicate names, a broken directory...): torch's reader is laxer in
 * places, so each local record named `<prefix>/data.pkl` and STORED is still scanned, found by walking
 * local headers. Its size comes from the local header when it has one; torch writes 0 there (the real
 * size is in a data descriptor), so then only its first pickle is scanned, to its STOP.
 */
export async function scanZipLeniently(fh: FileHandle, size: number, bytes?: Uint8Array): Promise<SafetyFinding[]> {
  const buf = Buffer.from(bytes ?? (await readHead(fh, Math.min(size, 64 * 1024 * 1024))));
  const findings: SafetyFinding[] = [];
  for (let at = buf.indexOf(LOCAL_SIG); at >= 0 && at + 30 <= buf.length; at = buf.indexOf(LOCAL_SIG, at + 4)) {
    const method = buf.readUInt16LE(at + 8);
    const csize = buf.readUInt32LE(at + 18);
    const nameLen = buf.readUInt16LE(at + 26);
    const start = at + 30 + nameLen + buf.readUInt16LE(at + 28);
    const name = buf.toString('utf8', at + 30, Math.min(buf.length, at + 30 + nameLen));
    if (method !== 0 || !/^[^/]+\/data\.pkl$/.test(name) || start >= buf.length) continue;
    const sized = csize > 0 && start + csize <= buf.length;
    const scan = scanPickles(buf.subarray(start, sized ? start + csize : buf.length), {
      maxPickles: sized ? undefined : 1,
    });
    for (const f of scanFindings(scan, name)) if (!findings.some((x) => x.global === f.global)) findings.push(f);
  }
  return findings;
}

const LOCAL_SIG = Buffer.from('504b0304', 'hex');

/** Attaches findings to a reader's error (they outrank it), and returns it for `throw`. */
export function withFindings(e: unknown, findings: readonly SafetyFinding[]): unknown {
  if (isFormatError(e) && findings.length) (e as FormatError).unsafe = findings;
  return e;
}
