/**
 * `npm run bench:history`: the statistics' sync count (`History.syncCount`, which every `status` and
 * `verify` asks for) against its peer in the same run: readline over the log and a parse of every
 * line, which is how it was counted before. Three generated logs of LINES lines (default 20,000):
 * VERIFY lines only (a workspace verified often), one SYNC line in ten, SYNC lines only. Each count is
 * taken in a fresh History (no count kept from before), best and median of BENCH_RUNS (default 7), and
 * both must agree. Never a timed test.
 */
import { createReadStream, mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { createInterface } from 'node:readline';
import { History, HISTORY_DIR, HISTORY_FILE, isCountedSync, parseHistoryLine } from '../../server/src/engine/history';

const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 7) || 7);
const LINES = Math.max(1, Number(process.env.LINES ?? 20_000) || 20_000);

/** The peer: every line through readline and JSON.parse. */
async function parseEveryLine(file: string): Promise<number> {
  let n = 0;
  for await (const l of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) {
    if (l.trim() !== '' && isCountedSync(parseHistoryLine(l))) n++;
  }
  return n;
}

function log(root: string, syncEvery: number): string {
  const lines: string[] = [];
  for (let i = 0; i < LINES; i++) {
    const sync = syncEvery > 0 && i % syncEvery === 0;
    lines.push(
      JSON.stringify({
        time: '2026-12-04T08:11:32.369Z',
        event: sync ? 'SYNC' : 'VERIFY',
        lora_id: `lora_${i.toString(16)}`,
        name: `LoRA_Gen1_${i}`,
        ...(sync ? { reason: 'LEARNING_UPDATE', synced_copies: (i % 4) + 1, total_copies: 5 } : { consistent: true }),
        files: [`Team_${i % 40}/🎯_WIN_EXPERTS/LoRA_Gen1_${i}.pt`],
      }),
    );
  }
  mkdirSync(join(root, HISTORY_DIR), { recursive: true });
  const file = join(root, HISTORY_DIR, HISTORY_FILE);
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  const rows: string[] = [];
  for (const [label, every] of [
    ['VERIFY lines only', 0],
    ['one SYNC line in ten', 10],
    ['SYNC lines only', 1],
  ] as const) {
    const root = mkdtempSync(join(tmpdir(), 'lora-bench-history-'));
    try {
      const file = log(root, every);
      const ours: number[] = [];
      const peer: number[] = [];
      for (let r = 0; r < RUNS; r++) {
        let t = performance.now();
        const a = await new History(root).syncCount();
        ours.push(performance.now() - t);
        t = performance.now();
        const b = await parseEveryLine(file);
        peer.push(performance.now() - t);
        if (a !== b) throw new Error(`${label}: syncCount ${a}, a parse of every line ${b}`);
      }
      rows.push(
        `| ${label} | ${Math.min(...ours).toFixed(1)} | ${median(ours).toFixed(1)} | ${Math.min(...peer).toFixed(1)} | ${median(peer).toFixed(1)} | ${(median(ours) / median(peer)).toFixed(2)} |`,
      );
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }
  console.log(`\n${LINES} lines per log, ${RUNS} runs each, interleaved\n`);
  console.log('| log | ours best ms | ours median ms | parse every line best ms | median ms | ours / peer |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const r of rows) console.log(r);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
