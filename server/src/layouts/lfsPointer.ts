/**
 * git-lfs pointer files: what a clone without `git lfs pull` holds in place of a checkpoint. The
 * format (git-lfs docs/spec.md): UTF-8 lines `key value`, `version` first, then keys sorted, among
 * them `oid sha256:<64 hex>` and `size <bytes>`, each line ending in LF; the file is under 1024 bytes.
 */

export const LFS_POINTER_MAX_BYTES = 1024;
export const LFS_VERSION_LINE = 'version https://git-lfs.github.com/spec/v1';
/** The current version line, and the one early clients wrote (git-lfs still reads it). */
const VERSION_LINES = [LFS_VERSION_LINE, 'version https://hawser.github.com/spec/v1'];

export interface LfsPointer {
  oid: string;
  size: number;
}

/** Cheap first check on a file's first bytes and size, before reading it whole. */
export function mayBeLfsPointer(head: Uint8Array, fileSize: number): boolean {
  if (fileSize > LFS_POINTER_MAX_BYTES || head.length < 8) return false;
  return Buffer.from(head.buffer, head.byteOffset, Math.min(head.length, 8)).toString('latin1') === 'version ';
}

/** The pointer's oid and size, or undefined when the bytes are not an LFS pointer. */
export function parseLfsPointer(bytes: Uint8Array): LfsPointer | undefined {
  if (bytes.length > LFS_POINTER_MAX_BYTES) return undefined;
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8');
  if (!text.endsWith('\n')) return undefined;
  const lines = text.slice(0, -1).split('\n');
  if (!VERSION_LINES.includes(lines[0])) return undefined;
  let oid: string | undefined;
  let size: number | undefined;
  for (const line of lines.slice(1)) {
    const m = /^([a-z0-9.-]+) (.+)$/.exec(line);
    if (!m) return undefined;
    if (m[1] === 'oid') {
      const o = /^sha256:([0-9a-f]{64})$/.exec(m[2]);
      if (!o) return undefined;
      oid = o[1];
    } else if (m[1] === 'size') {
      if (!/^\d{1,16}$/.test(m[2])) return undefined;
      size = Number(m[2]);
    }
  }
  return oid !== undefined && size !== undefined ? { oid, size } : undefined;
}

/** The issue for a CORRUPT status. */
export function lfsPointerIssue(file: string, p: LfsPointer): { type: 'LFS_POINTER'; file: string; detail: string } {
  return {
    type: 'LFS_POINTER',
    file,
    detail: `a git-lfs pointer to a ${p.size}-byte file (sha256 ${p.oid.slice(0, 12)}…), not the file itself: run \`git lfs pull\``,
  };
}
