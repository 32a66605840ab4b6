/**
 * Entries of many files hold the same things: every in-sync copy has its source's tensor list and
 * general metadata, and every file of a LoRA its id and name. An interner makes equal parts one
 * object, which is most of the memory the index of a large workspace takes (measured: ~2.1 KB per
 * small LoRA file before, ~0.8 KB after). Entries are never changed once made, so sharing is safe;
 * everything shared here is read-only for its users.
 *
 * An interner lives for one batch (a scan, a cache load) and is then dropped, so it never holds on
 * to what the index no longer has.
 */
import type { FileEntry, TensorEntry } from './loraFile';
import { ownHex } from '../formats/digestText';
import { INLINE_META_MARK } from './loraFile';

const sameShape = (a: number[], b: number[]) => a === b || (a.length === b.length && a.every((d, i) => d === b[i]));

/** Equal tensor lists: the same tensors in the same order. */
export function sameTensors(a: TensorEntry[], b: TensorEntry[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const y = b[i];
    if (x !== y && (x.name !== y.name || x.dtype !== y.dtype || x.digest !== y.digest || !sameShape(x.shape, y.shape)))
      return false;
  }
  return true;
}

/** Equal records, keys in the same order. */
export function sameRecord(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a[k] === b[k]);
}

export class EntryInterner {
  private readonly strings = new Map<string, string>();
  private readonly shapes = new Map<string, number[]>();
  private readonly tensorLists = new Map<string, TensorEntry[]>();
  private readonly metaSets = new Map<string, Record<string, string>>();
  private readonly keyLists = new Map<string, string[]>();

  str(s: string): string;
  str(s: string | undefined): string | undefined;
  str(s: string | undefined): string | undefined {
    if (s === undefined) return s;
    const known = this.strings.get(s);
    if (known !== undefined) return known;
    this.strings.set(s, s);
    return s;
  }

  /** `str` for a digest: the first one kept is a string of its own, not a view of a longer text (digestText.ts). */
  digest(s: string): string {
    const known = this.strings.get(s);
    if (known !== undefined) return known;
    const own = ownHex(s);
    this.strings.set(own, own);
    return own;
  }

  shape(a: number[]): number[] {
    const k = a.join(',');
    const known = this.shapes.get(k);
    if (known) return known;
    this.shapes.set(k, a);
    return a;
  }

  /** The shared list equal to this one (same tensors, same order), or this one with its parts interned. */
  tensors(list: TensorEntry[], digest: string): TensorEntry[] {
    if (!list.length) return list;
    const known = this.tensorLists.get(digest);
    if (known && sameTensors(known, list)) return known;
    const own = list.map((t) => ({
      name: this.str(t.name),
      dtype: this.str(t.dtype),
      shape: this.shape(t.shape),
      digest: this.digest(t.digest),
    }));
    if (!known) this.tensorLists.set(digest, own);
    return own;
  }

  metaKeys(m: Record<string, string>, digest: string): Record<string, string> {
    const known = this.metaSets.get(digest);
    if (known && sameRecord(known, m)) return known;
    // A record kept: its hashed values (not the inline `=` texts) become strings of their own.
    for (const k in m) if (m[k][0] !== INLINE_META_MARK) m[k] = this.digest(m[k]);
    if (!known) this.metaSets.set(digest, m);
    return m;
  }

  keys(list: string[]): string[] {
    const k = list.join('\n');
    const known = this.keyLists.get(k);
    if (known && known.length === list.length && known.every((s, i) => s === list[i])) return known;
    const own = list.map((s) => this.str(s));
    if (!known) this.keyLists.set(k, own);
    return own;
  }

  /** Its strings shared (copies synced together hold the same time and reason). */
  syncInfo(si: FileEntry['syncInfo']): FileEntry['syncInfo'] {
    if (si.lastSyncTime !== undefined) si.lastSyncTime = this.str(si.lastSyncTime);
    if (si.reason !== undefined) si.reason = this.str(si.reason);
    return si;
  }

  /** Replaces the entry's parts with shared equal ones, in place (a fresh entry, not yet shared), and returns it. */
  entry(e: FileEntry): FileEntry {
    e.tensors = this.tensors(e.tensors, e.tensorsDigest);
    e.metaKeys = this.metaKeys(e.metaKeys, e.metaDigest);
    e.copyKeys = this.keys(e.copyKeys);
    e.unsafeGlobals = this.keys(e.unsafeGlobals);
    e.tensorsDigest = this.digest(e.tensorsDigest);
    e.metaDigest = this.digest(e.metaDigest);
    if (e.loraId !== undefined) e.loraId = this.str(e.loraId);
    if (e.name !== undefined) e.name = this.str(e.name);
    e.syncInfo = this.syncInfo(e.syncInfo);
    return e;
  }
}
