/**
 * Where each file of a workspace is on disk. The engine names files by their path relative to the
 * root in NFC; on disk a folder may be spelled otherwise (NFD, as macOS writes names). Only paths whose
 * spelling differs are remembered, so the usual file costs no memory and no path join.
 */
import { join, resolve } from 'node:path';
import { isClean } from './scanner';

export class DiskPaths {
  private readonly absOf = new Map<string, string>();
  /** The root is absolute with no '.', '..' or empty segment (see note). */
  private readonly rootClean: boolean;

  constructor(private readonly root: string) {
    this.rootClean = root.length > 1 && root.startsWith('/') && isClean(root);
  }

  /** Where the file `rel` (NFC) is. */
  abs(rel: string): string {
    return this.absOf.get(rel) ?? join(this.root, rel);
  }

  /** Where a listed file is: what the listing's own `absolute` option gave (path.resolve), without a resolve per file. */
  ofListed(onDisk: string): string {
    return this.rootClean ? `${this.root}/${onDisk}` : resolve(this.root, onDisk);
  }

  /** Notes where `rel` is: only paths whose on-disk spelling differs from the NFC one (an NFD folder) are remembered. */
  note(rel: string, abs: string): void {
    // root + '/' + rel is what join gives when both are clean (the usual case: no join per file).
    const joined = this.rootClean && abs === `${this.root}/${rel}` && isClean(rel) ? abs : join(this.root, rel);
    if (abs === joined) this.absOf.delete(rel);
    else this.absOf.set(rel, abs);
  }

  /** The file is gone (or no longer included). */
  forget(rel: string): void {
    this.absOf.delete(rel);
  }
}
