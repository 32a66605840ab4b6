/**
 * LoRA Sync's record of what it wrote into copies that cannot carry one themselves: a plain state
 * dict (`adapter_model.bin`, `pytorch_lora_weights.bin`, kohya's `.pt`) is a flat {name: tensor}
 * mapping, and a key added to it breaks `load_state_dict(strict=True)`. So the record lives in the
 * state folder, one small file per copy (`.lora-sync/synced/<hash of the path>.json`), each written
 * atomically on its own: two processes syncing different LoRAs never lose each other's records.
 *
 * A record says "at this path I wrote these tensors, from this source": the status rules read it as
 * they read `sync_info.lora_sync` in a seed or safetensors copy (STALE when the copy still holds those
 * tensors, DIVERGED when it changed on its own). A record that no longer matches the file errs on the
 * safe side: the copy is DIVERGED, refused unless forced.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { atomicWrite } from '../io/atomicWrite';
import { ensureRealDir } from '../io/realDir';
import { STATE_DIR } from './config';

export interface SyncRecord {
  /** The tensorsDigest of what was written. */
  tensors: string;
  alg: string;
  /** The source it was written from (relative path). */
  source: string;
  time?: string;
}

export const RECORDS_DIR = 'synced';

const fileNameOf = (path: string) => `${createHash('sha256').update(path).digest('hex').slice(0, 32)}.json`;

function isRecord(v: unknown): v is SyncRecord & { path: string } {
  const r = v as Record<string, unknown>;
  return (
    !!r &&
    typeof r.path === 'string' &&
    typeof r.tensors === 'string' &&
    typeof r.alg === 'string' &&
    typeof r.source === 'string'
  );
}

export class SyncRecords {
  private records = new Map<string, SyncRecord>();

  constructor(private readonly root: string) {}

  private get dir(): string {
    return join(this.root, STATE_DIR, RECORDS_DIR);
  }

  /** Reads every record; a missing folder is none, an unreadable record is skipped (its copy falls back to DIVERGED). */
  async load(): Promise<void> {
    const next = new Map<string, SyncRecord>();
    let names: string[] = [];
    try {
      names = await readdir(this.dir);
    } catch {
      // no records yet
    }
    for (const n of names) {
      if (!n.endsWith('.json')) continue;
      try {
        const v = JSON.parse(await readFile(join(this.dir, n), 'utf8'));
        if (isRecord(v) && fileNameOf(v.path) === n)
          next.set(v.path, { tensors: v.tensors, alg: v.alg, source: v.source, time: v.time });
      } catch {
        // a torn or foreign file: not a record
      }
    }
    this.records = next;
  }

  recordOf(path: string): SyncRecord | undefined {
    return this.records.get(path);
  }

  /** Persists the record of one written copy (atomically), then remembers it. */
  async record(path: string, r: SyncRecord): Promise<void> {
    await ensureRealDir(join(this.root, STATE_DIR));
    await ensureRealDir(this.dir);
    const text = `${JSON.stringify({ path, ...r })}\n`;
    await atomicWrite(join(this.dir, fileNameOf(path)), (fh) => fh.writeFile(text));
    this.records.set(path, r);
  }
}
