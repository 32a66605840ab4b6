/**
 * The real-layouts sets of `npm run bench` (issue 13): each set is checked first (`lora-sync status
 * --json` must give every generated file the status and layout it was written for, with no embedded-hash
 * mismatch), then measured against `cat` and `sha256sum` of the same bytes:
 * - cold status (no index cache);
 * - the ecosystem hashes of every LoRA file, as `inspect --json` computes them (engine/fileHashes.ts:
 *   AutoV2 of the whole file, AutoV3 of the data section, A1111's legacy window, the embedded-hash check),
 *   one file at a time;
 * - the embedded-hash check's share of the cold status: the same workspace with kohya's `sshs_*` keys
 *   stripped in place (`EmbeddedKeys`: same file sizes and data, the freed header bytes become padding
 *   spaces), the two cold statuses interleaved, best of BENCH_RUNS each.
 */
import { spawnSync } from 'node:child_process';
import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EMBEDDED_KEYS } from '../../server/src/layouts/ecosystemHashes';
import { ROOT, RUNS, best, extras, floor, floorRows, ours, rows, settle } from './common';
import type { Generated } from './layouts';

interface StatusJson {
  stats: { by_status: Record<string, number> };
  files: Array<{ path: string; status: string; layout?: string; issues?: Array<{ type: string }> }>;
}

/** Throws, naming the files, unless the engine gives every generated file its intended status and layout. */
export function checkStatuses(ws: string, g: Generated, what: string): string {
  const r = spawnSync(process.execPath, [join(ROOT, 'dist/cli.js'), 'status', '--root', ws, '--json'], {
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
  if (!r.stdout) throw new Error(`lora-sync status --json on ${what} printed nothing (exit ${r.status}): ${r.stderr}`);
  const s = JSON.parse(r.stdout) as StatusJson;
  const wrong: string[] = [];
  const seen = new Set<string>();
  for (const f of s.files) {
    seen.add(f.path);
    const want = g.files[f.path];
    if (!want) wrong.push(`${f.path}: not generated (${f.status})`);
    else if (f.status !== want.status || f.layout !== want.layout)
      wrong.push(`${f.path}: ${f.status} / ${f.layout ?? 'no layout'}, written as ${want.status} / ${want.layout}`);
    const bad = (f.issues ?? []).filter((i) => i.type === 'EMBEDDED_HASH_MISMATCH').length;
    if (bad) wrong.push(`${f.path}: ${bad} embedded-hash mismatches (the generator embeds right hashes)`);
  }
  for (const p of Object.keys(g.files)) if (!seen.has(p)) wrong.push(`${p}: not listed by status`);
  const want: Record<string, number> = {};
  for (const f of Object.values(g.files)) want[f.status] = (want[f.status] ?? 0) + 1;
  const got = Object.entries(s.stats.by_status).filter(([, n]) => n > 0);
  const counts = got.map(([k, n]) => `${k} ${n}`).join(', ');
  if (wrong.length)
    throw new Error(
      `the ${what} workspace is not recognized as generated (status: ${counts}; intended: ${JSON.stringify(want)}), ` +
        `so its figures would measure something else:\n  ${wrong.slice(0, 20).join('\n  ')}${wrong.length > 20 ? `\n  ... ${wrong.length - 20} more` : ''}`,
    );
  return counts;
}

/** Strips kohya's embedded hashes from headers in place (same length: spaces pad) and puts them back. */
export class EmbeddedKeys {
  private readonly originals = new Map<string, Buffer>();
  private stripped = new Map<string, Buffer>();
  constructor(private readonly files: string[]) {}

  /** Returns how many files had embedded hashes. */
  async strip(): Promise<number> {
    if (!this.originals.size) await this.prepare();
    for (const [f, h] of this.stripped) await writeAt(f, h);
    return this.stripped.size;
  }

  async restore(): Promise<void> {
    for (const [f, h] of this.originals) await writeAt(f, h);
  }

  private async prepare(): Promise<void> {
    for (const f of this.files) {
      const fh = await open(f, 'r');
      try {
        const len = Buffer.alloc(8);
        await fh.read(len, 0, 8, 0);
        const header = Buffer.alloc(Number(len.readBigUInt64LE(0)));
        await fh.read(header, 0, header.length, 8);
        const h = JSON.parse(header.toString('utf8'));
        const md: Record<string, string> | undefined = h.__metadata__;
        if (!md || !EMBEDDED_KEYS.some((k) => k in md)) continue;
        for (const k of EMBEDDED_KEYS) delete md[k];
        const text = Buffer.from(JSON.stringify(h), 'utf8');
        const out = Buffer.alloc(header.length, 0x20);
        text.copy(out);
        this.originals.set(f, header);
        this.stripped.set(f, out);
      } finally {
        await fh.close();
      }
    }
  }
}

async function writeAt(file: string, header: Buffer): Promise<void> {
  const fh = await open(file, 'r+');
  try {
    await fh.write(header, 0, header.length, 8);
  } finally {
    await fh.close();
  }
}

export async function benchLayouts(label: string, ws: string, work: string, g: Generated): Promise<void> {
  const files = Object.keys(g.files).map((rel) => join(ws, rel));
  const list = join(work, `${label.replace(/\W+/g, '_')}.list`);
  await writeFile(list, files.join('\0'));
  const counts = checkStatuses(ws, g, label);
  const keys = new EmbeddedKeys(files);
  const embedding = await keys.strip();
  checkStatuses(ws, g, `${label} (embedded hashes stripped)`);
  await keys.restore();
  console.log(
    `\n[${label}] ${files.length} files, ${(g.bytes / 1e6).toFixed(0)} MB, ${embedding} embed kohya's hashes; status: ${counts}`,
  );
  floor('cat', list); // warm the page cache for everyone
  const cat = best(
    () => floor('cat', list),
    (x) => x,
  );
  const sha = best(
    () => floor('sha256sum', list),
    (x) => x,
  );
  // Cold status with the hashes embedded and without them, interleaved (the order alternating); the
  // best wall time of each, and the least CPU of each (steadier on a shared machine).
  let withKeys: Record<string, number> | undefined;
  let without: Record<string, number> | undefined;
  const cpu = { with: Number.POSITIVE_INFINITY, without: Number.POSITIVE_INFINITY };
  const keep = (a: Record<string, number> | undefined, b: Record<string, number>) =>
    !a || b.total_ms < a.total_ms ? b : a;
  for (let i = 0; i < RUNS; i++) {
    for (const strip of i % 2 ? [true, false] : [false, true]) {
      if (strip) await keys.strip();
      settle();
      const r = ours('status-cold', ws);
      if (strip) {
        without = keep(without, r);
        cpu.without = Math.min(cpu.without, r.cpu_ms);
        await keys.restore();
      } else {
        withKeys = keep(withKeys, r);
        cpu.with = Math.min(cpu.with, r.cpu_ms);
      }
    }
  }
  const cold = withKeys!;
  const hashes = best(
    () => ours('hashes', list),
    (r) => r.total_ms,
  );
  if (hashes.mismatches) throw new Error(`${label}: ${hashes.mismatches} embedded-hash mismatches in the hashes pass`);
  ours('status-warm', ws); // the cache the last cold run left may be of the stripped files
  const warm = best(
    () => ours('status-warm', ws),
    (r) => r.total_ms,
  );
  floorRows(label, cold.total_ms, cat, sha);
  rows.push({
    label: `${label}: ecosystem hashes of every file (inspect: AutoV2, AutoV3, legacy, embedded check) vs sha256sum`,
    ours: hashes.total_ms,
    peer: sha,
    peerName: 'sha256sum',
    note: `one file at a time, in-process; CPU ${hashes.cpu_ms.toFixed(0)} ms`,
  });
  const share = (cold.total_ms - without!.total_ms) / cold.total_ms;
  rows.push({
    label: `${label}: cold status with kohya's embedded hashes (${embedding} files) vs the same keys stripped`,
    ours: cold.total_ms,
    peer: without!.total_ms,
    peerName: 'ours, stripped',
    note: `the embedded-hash check: ${(share * 100).toFixed(0)} % of cold status (least CPU: ${(((cpu.with - cpu.without) / cpu.with) * 100).toFixed(0)} %, ${cpu.with.toFixed(0)} / ${cpu.without.toFixed(0)} ms)`,
  });
  extras.push(
    `${label}: warm start ${warm.total_ms.toFixed(0)} ms; peak RSS cold status ${cold.max_rss_mb.toFixed(0)} MB, hashes ${hashes.max_rss_mb.toFixed(0)} MB; least CPU (all threads) cold status ${cpu.with.toFixed(0)} ms (stripped ${cpu.without.toFixed(0)} ms), hashes ${hashes.cpu_ms.toFixed(0)} ms`,
  );
}
