import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { History, type HistoryEvent, isCountedSync, parseHistoryLine } from '../../server/src/engine/history';
import { prng } from '../../server/src/demo/loraTree';

const MODULE = path.resolve(__dirname, '../../server/src/engine/history.ts');

function ev(loraId: string, name: string, extra: Partial<HistoryEvent> = {}): HistoryEvent {
  return { time: new Date().toISOString(), event: 'SYNC', lora_id: loraId, name, ...extra };
}

/** The raw lines of the log (without the final empty piece after the last '\n'). */
async function rawLines(h: History): Promise<string[]> {
  const text = await fsp.readFile(h.path, 'utf8');
  const lines = text.split('\n');
  assert.equal(lines.pop(), '', 'log must end with a newline');
  return lines;
}

describe('engine/history', () => {
  let root: string;
  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'lora-history-'));
  });
  afterEach(async () => {
    await fsp.rm(root, { recursive: true, force: true });
  });

  it('round-trips events with Unicode names and creates .lora-sync/ on first append', async () => {
    const h = new History(path.join(root, 'ws'));
    assert.equal(h.path, path.join(root, 'ws', '.lora-sync', 'history.jsonl'));
    assert.deepEqual(await h.read(), { events: [], skippedLines: 0 });
    assert.equal(await h.repair(), 0);

    const events: HistoryEvent[] = [
      ev('lora_abc123', 'LoRA_Gen5_a3b2', {
        match_idx: 50,
        reason: 'LEARNING_UPDATE',
        synced_copies: 5,
        failed_copies: 0,
        total_copies: 5,
      }),
      ev('lora_ç', '⭐_AKTIF_EN_IYILER/LoRA_İğüşöç', {
        event: 'VERIFY',
        consistent: false,
        files: ['💎_PERFECT_HYBRID_HALL/LoRA_A_abc123.pt', '🏛️_NEWTON_HALL/x.pt'],
      }),
      ev('lora_nl', 'line\nbreak\u2028sep\u2029"quoted"\\', {
        event: 'FORCE_OVERWRITE',
        backup: '.lora-sync/backup/ä.pt',
        details: { nested: { a: [1, 'ü'] } },
      }),
      ev('lora_r', 'Manchester_United/🆚_VS_Liverpool', { event: 'RESTORE', details: { big: 12n as unknown } }),
    ];
    await h.append(events.slice(0, 2));
    await h.append(events.slice(2));
    const { events: got, skippedLines } = await h.read();
    assert.equal(skippedLines, 0);
    const expected = events.map((e) => ({ ...e }));
    expected[3].details = { big: '12' }; // BigInt is stored as its decimal string
    assert.deepEqual(got, expected);
    assert.equal((await rawLines(h)).length, 4, 'a newline inside a name must not split the line');
  });

  it('writes nothing for an empty batch and rejects invalid events without writing', async () => {
    const h = new History(root);
    await h.append([]);
    await assert.rejects(fsp.stat(h.path), { code: 'ENOENT' });
    await h.append([ev('a', 'A')]);
    const before = await fsp.readFile(h.path);
    const bad = [ev('b', 'B'), { ...ev('c', 'C'), event: 'NOPE' } as unknown as HistoryEvent];
    await assert.rejects(h.append(bad), TypeError);
    await assert.rejects(h.append([{ ...ev('d', 'D'), lora_id: 7 } as unknown as HistoryEvent]), TypeError);
    assert.deepEqual(await fsp.readFile(h.path), before, 'a rejected batch must leave the file untouched');
  });

  it('drops a torn last line (half a JSON line) before the next append', async () => {
    const h = new History(root);
    await h.append([ev('a', 'A1'), ev('a', 'A2'), ev('b', 'B1')]);
    const half = '{"lora_id":"torn-marker","name":"ha'; // what a crash mid-write leaves
    await fsp.appendFile(h.path, half);

    const before = await h.read();
    assert.deepEqual(
      before.events.map((e) => e.name),
      ['A1', 'A2', 'B1'],
    );
    assert.equal(before.skippedLines, 1, 'read counts the torn tail');

    await h.append([ev('c', 'C1'), ev('c', 'C2')]);
    const after = await h.read();
    assert.equal(after.skippedLines, 0);
    assert.deepEqual(
      after.events.map((e) => e.name),
      ['A1', 'A2', 'B1', 'C1', 'C2'],
    );
    assert.ok(!(await fsp.readFile(h.path, 'utf8')).includes(half));
    assert.equal((await rawLines(h)).length, 5);
  });

  // Decision: a last line without '\n' is torn even if it parses — the write may not have finished
  // (a cut-off number can still be valid JSON), so repair drops it and read skips it.
  it('treats a complete JSON line without its newline as torn', async () => {
    const h = new History(root);
    await h.append([ev('a', 'A1')]);
    const complete = JSON.stringify(ev('x', 'no-newline'));
    await fsp.appendFile(h.path, complete);
    const r = await h.read();
    assert.deepEqual(
      r.events.map((e) => e.name),
      ['A1'],
    );
    assert.equal(r.skippedLines, 1);
    assert.equal(await h.repair(), Buffer.byteLength(complete));
    assert.equal(await h.repair(), 0, 'repair is idempotent');
    assert.deepEqual(await h.read().then((x) => [x.events.map((e) => e.name), x.skippedLines]), [['A1'], 0]);
  });

  it('repairs a torn tail longer than one read chunk, and a file with no newline at all', async () => {
    const h = new History(root);
    await h.append([ev('a', 'A1')]);
    const size = (await fsp.stat(h.path)).size;
    await fsp.appendFile(h.path, `{"time":"${'z'.repeat(300_000)}`);
    assert.equal(await h.repair(), 300_009);
    assert.equal((await fsp.stat(h.path)).size, size);

    await fsp.writeFile(h.path, 'x'.repeat(200_000));
    assert.deepEqual(await h.read(), { events: [], skippedLines: 1 });
    assert.equal(await h.repair(), 200_000);
    assert.equal((await fsp.stat(h.path)).size, 0);
    await h.append([ev('b', 'B1')]);
    assert.deepEqual(
      (await h.read()).events.map((e) => e.name),
      ['B1'],
    );
  });

  it('skips and counts garbage lines in the middle, never throwing on content', async () => {
    const h = new History(root);
    await h.append([ev('a', 'first')]);
    const garbage = [
      'not json',
      '[1,2,3]',
      'null',
      '"a string"',
      '{"time":"t","event":"SYNC"}', // no lora_id
      '{"time":"t","event":"BOGUS","lora_id":"a","name":"n"}', // unknown kind
      '{"time":5,"event":"SYNC","lora_id":"a","name":"n"}', // time not a string
      '{"time":"t","event":"SYNC","lora_id":"a"', // cut
    ];
    await fsp.appendFile(h.path, `${garbage.join('\n')}\n\n   \n`);
    await fsp.appendFile(h.path, Buffer.from([0xff, 0xfe, 0x00, 0x7b, 0x0a])); // invalid UTF-8 and a NUL
    await h.append([ev('b', 'last')]);
    const r = await h.read();
    assert.deepEqual(
      r.events.map((e) => e.name),
      ['first', 'last'],
    );
    assert.equal(r.skippedLines, garbage.length + 1, 'blank lines are not counted, garbage lines are');
  });

  it('filters by loraId and keeps only the newest `limit`', async () => {
    const h = new History(root);
    const batch: HistoryEvent[] = [];
    for (let i = 0; i < 5000; i++) batch.push(ev(i % 3 === 0 ? 'a' : 'b', `n${i}`, { match_idx: i }));
    await h.append(batch);
    const idx = (r: { events: HistoryEvent[] }) => r.events.map((e) => e.match_idx);

    assert.equal((await h.read()).events.length, 5000);
    assert.deepEqual(idx(await h.read({ limit: 4 })), [4996, 4997, 4998, 4999]);
    assert.deepEqual(idx(await h.read({ limit: 3, loraId: 'a' })), [4992, 4995, 4998]);
    assert.deepEqual(idx(await h.read({ limit: 0 })), []);
    assert.equal((await h.read({ limit: 10_000 })).events.length, 5000);
    const onlyA = await h.read({ loraId: 'a' });
    assert.equal(onlyA.events.length, 1667);
    assert.ok(onlyA.events.every((e) => e.lora_id === 'a'));
    assert.deepEqual(idx(await h.read({ loraId: 'nobody' })), []);
    // limit just past the batch trimming threshold (2*limit+1024) keeps the right window
    const w = await h.read({ limit: 1500 });
    assert.deepEqual(
      idx(w),
      Array.from({ length: 1500 }, (_, i) => 3500 + i),
    );
  });

  it('a limited read starts from the end: lines before the newest events are never parsed', async () => {
    const h = new History(root);
    // Garbage at the very start, then 30,000 events (about 3 MB, many read chunks).
    await fsp.mkdir(path.dirname(h.path), { recursive: true });
    await fsp.writeFile(h.path, 'garbage at the start\n');
    const batch: HistoryEvent[] = [];
    for (let i = 0; i < 30_000; i++) batch.push(ev(i % 7 === 0 ? 'a' : 'b', `n${i}`, { match_idx: i }));
    await h.append(batch);
    const full = await h.read();
    assert.equal(full.skippedLines, 1, 'a full read parses every line');
    const tail = await h.read({ limit: 5 });
    assert.deepEqual(
      tail.events.map((e) => e.match_idx),
      [29_995, 29_996, 29_997, 29_998, 29_999],
    );
    assert.equal(tail.skippedLines, 0, 'the garbage line at the start was not read');
    // A filter that matches nothing reads back to the start, and then meets the garbage.
    assert.deepEqual(await h.read({ limit: 5, loraId: 'nobody' }), { events: [], skippedLines: 1 });
  });

  it('a limited read gives exactly the newest events a full read gives (multi-byte names across chunk edges, CRLF, lone CR, blanks, torn tail)', async () => {
    const h = new History(root);
    const rnd = prng(7);
    // Mostly short names; now and then one longer than a read chunk (64 KiB), or of many 4-byte characters.
    const names = ['Beşiktaş', '🌟_EINSTEIN_HALL/LoRA_ğ', 'plain', '💎'.repeat(3000)];
    const parts: string[] = [];
    for (let i = 0; i < 3000; i++) {
      const r = rnd();
      const name = i % 997 === 0 ? 'x'.repeat(70_000) : names[Math.floor(rnd() * names.length)];
      const e = ev(r < 0.5 ? 'a' : 'b', name, { match_idx: i });
      const line = JSON.stringify(e);
      if (r < 0.03) parts.push(`${line}\r\n`);
      else if (r < 0.05)
        parts.push(`garbage\r${line}\n`); // readline ends a line at a lone CR too
      else if (r < 0.07) parts.push('\n   \n');
      else parts.push(`${line}\n`);
    }
    await fsp.mkdir(path.dirname(h.path), { recursive: true });
    await fsp.writeFile(h.path, `${parts.join('')}{"time":"torn`);
    for (const loraId of [undefined, 'a', 'b']) {
      const all = await h.read({ loraId });
      for (const limit of [0, 1, 2, 17, 500, 2999, 10_000]) {
        const got = await h.read({ limit, loraId });
        assert.deepEqual(got.events, limit ? all.events.slice(-limit) : [], `limit ${limit}, lora ${loraId}`);
        if (got.events.length === all.events.length) assert.equal(got.skippedLines, all.skippedLines);
      }
    }
  });

  it('counts the syncs that synced a copy once, then only what was appended (a replaced or emptied log is counted again)', async () => {
    const h = new History(root);
    assert.equal(await h.syncCount(), 0, 'no log yet');
    await h.append([
      ev('a', 'n', { synced_copies: 2 }),
      ev('a', 'n', { synced_copies: 0 }),
      ev('a', 'n', { event: 'VERIFY' }),
    ]);
    assert.equal(await h.syncCount(), 1);
    await fsp.appendFile(h.path, 'garbage\n');
    await h.append([ev('b', 'm', { synced_copies: 1 }), ev('b', 'm', { synced_copies: 3 })]);
    assert.equal(await h.syncCount(), 3);
    await fsp.appendFile(h.path, JSON.stringify(ev('c', 'torn', { synced_copies: 1 }))); // no '\n' yet: torn
    assert.equal(await h.syncCount(), 3, 'a line counts once its newline is written');
    await fsp.appendFile(h.path, '\n');
    assert.equal(await h.syncCount(), 4);
    // A fresh History counts the same from scratch.
    assert.equal(await new History(root).syncCount(), 4);
    // Replaced by another log (a new file): counted again.
    const other = `${h.path}.new`;
    await fsp.writeFile(other, `${JSON.stringify(ev('z', 'z', { synced_copies: 9 }))}\n`);
    await fsp.rename(other, h.path);
    assert.equal(await h.syncCount(), 1);
    // Emptied in place, then written past where the count had stopped: counted again, not resumed.
    await fsp.truncate(h.path, 0);
    assert.equal(await h.syncCount(), 0);
    const lines = Array.from({ length: 5 }, (_, i) => JSON.stringify(ev('y', `y${i}`, { synced_copies: i % 2 })));
    await fsp.writeFile(h.path, `${lines.join('\n')}\n`);
    assert.equal(await h.syncCount(), 2);
    await fsp.rm(h.path);
    assert.equal(await h.syncCount(), 0, 'a removed log has no syncs');
  });

  it('counts syncs exactly as a readline parse of every line would, over lines it does not parse', async () => {
    const h = new History(root);
    await fsp.mkdir(path.dirname(h.path), { recursive: true });
    const line = (e: HistoryEvent) => JSON.stringify(e);
    // What the count was before it skipped lines: readline over the complete lines, each one parsed.
    const parseEveryLine = async (complete: number) => {
      let n = 0;
      const input = fs.createReadStream(h.path, { start: 0, end: complete - 1 });
      for await (const l of createInterface({ input, crlfDelay: Infinity })) {
        if (l.trim() !== '' && isCountedSync(parseHistoryLine(l))) n++;
      }
      return n;
    };
    // A BOM before the first line (JSON.parse refuses it, so that line is no event either way).
    const parts: Buffer[] = [Buffer.from(`\ufeff${line(ev('bom', 'bom', { synced_copies: 1 }))}\n`)];
    const rand = prng(7);
    for (let i = 0; i < 4000; i++) {
      const r = rand();
      const text = (t: string) => parts.push(Buffer.from(t));
      if (i % 1000 === 500)
        // a line longer than a read (1 MiB)
        text(`${line(ev(`l${i}`, 'big', { synced_copies: 1, files: ['x'.repeat(1500 * 1024)] }))}\n`);
      else if (r < 0.8) text(`${line(ev(`l${i}`, `LoRA_Gen1_${i}`, { event: 'VERIFY', consistent: true }))}\n`);
      else if (r < 0.88) text(`${line(ev(`l${i}`, 'ünï 🎯\u2028x', { synced_copies: i % 3 }))}\n`);
      else if (r < 0.9)
        // invalid UTF-8 in a SYNC line (decoded to U+FFFD either way) and a VERIFY line with an escape
        parts.push(
          Buffer.concat([
            Buffer.from(`{"time":"t","event":"SYNC","lora_id":"u${i}","name":"`),
            Buffer.from([0xff, 0xc3]),
          ]),
          Buffer.from('","synced_copies":1}\n'),
          Buffer.from(`{"time":"t","event":"VERIFY","lora_id":"v${i}","name":"\\u00e9"}\n`),
        );
      else if (r < 0.93) text(`${line(ev(`l${i}`, 'crlf', { synced_copies: 1 }))}\r\n`);
      else if (r < 0.95)
        // two events on one '\n' line, split by a lone '\r' (readline ends a line there too)
        text(`${line(ev(`l${i}`, 'a', { synced_copies: 1 }))}\r${line(ev(`l${i}`, 'b', { synced_copies: 2 }))}\n`);
      else if (r < 0.97) {
        // "SYNC" spelled with a JSON escape, and a key spelled with one: still SYNC events
        text(`{"time":"t","event":"\\u0053YNC","lora_id":"e${i}","name":"x","synced_copies":1}\n`);
        text(`{"time":"t","\\u0065vent":"SYNC","lora_id":"e${i}","name":"x","synced_copies":2}\n`);
      } else text('garbage SYNC {\n\n');
    }
    const complete = Buffer.concat(parts);
    await fsp.writeFile(h.path, Buffer.concat([complete, Buffer.from(line(ev('torn', 'torn', { synced_copies: 1 })))]));
    const expected = await parseEveryLine(complete.length);
    assert.ok(expected > 300, `the log holds syncs to count: ${expected}`);
    const skippable = complete
      .toString('latin1')
      .split('\n')
      .filter((l) => l && !l.includes('SYNC') && !l.includes('\\u')).length;
    assert.ok(skippable > 2500, `most lines are ones the count need not parse: ${skippable}`);
    const counted = new History(root);
    assert.equal(await counted.syncCount(), expected);
    // And from where that count stopped, across a line longer than a read.
    await fsp.truncate(h.path, complete.length); // the torn line goes
    await fsp.appendFile(
      h.path,
      `${line(ev('m', 'big', { synced_copies: 5, files: ['y'.repeat(2500 * 1024)] }))}\n${line(ev('m', 'm', { event: 'VERIFY' }))}\n`,
    );
    assert.equal(await counted.syncCount(), expected + 1);
    assert.equal(await new History(root).syncCount(), await parseEveryLine((await fsp.stat(h.path)).size));
  });

  it('never interleaves 50 concurrent appends, even across two History objects and a torn start', async () => {
    const h1 = new History(root);
    const h2 = new History(root + path.sep); // same file, different object
    await h1.append([ev('seed', 'seed')]);
    // A long torn tail makes every racing append want to truncate, and its backwards scan take many
    // reads: unserialised, a late truncate would cut lines another append has just written.
    await fsp.appendFile(h1.path, `{"time":"torn${'x'.repeat(2 << 20)}`);
    const rand = prng(7);
    const long = 'ş'.repeat(20_000);
    await Promise.all(
      Array.from({ length: 50 }, async (_, b) => {
        const n = 1 + Math.floor(rand() * 4);
        const batch = Array.from({ length: n }, (_, k) =>
          ev(`batch${b}`, `${long}${b}`, { match_idx: k, details: { n } }),
        );
        // Staggered starts put one append's repair between another's stat and write.
        for (let t = Math.floor(rand() * 12); t > 0; t--) await new Promise(setImmediate);
        return (b % 2 ? h2 : h1).append(batch);
      }),
    );
    const lines = await rawLines(h1);
    const r = await h1.read();
    assert.equal(r.skippedLines, 0);
    assert.equal(r.events.length, lines.length, 'every line is a valid event');
    assert.equal(r.events[0].name, 'seed');
    // Each batch's lines are adjacent, complete and in order; all 50 batches are present.
    const seen = new Set<string>();
    for (let i = 1; i < r.events.length; ) {
      const id = r.events[i].lora_id;
      const n = r.events[i].details?.n as number;
      assert.ok(!seen.has(id), `${id} appears twice`);
      seen.add(id);
      for (let k = 0; k < n; k++, i++) {
        assert.equal(r.events[i].lora_id, id, `batch ${id} interleaved`);
        assert.equal(r.events[i].match_idx, k);
      }
    }
    assert.equal(seen.size, 50);
  });

  it('a SIGKILLed appender loses nothing it reported as written (20 seeded kills)', async function () {
    this.timeout(180_000);
    const script = path.join(root, 'appender.mjs');
    await fsp.writeFile(
      script,
      `import { History } from ${JSON.stringify(MODULE)};
const [wsRoot, run, seed] = process.argv.slice(2);
let a = Number(seed) >>> 0;
const rand = () => { a = (a + 0x6d2b79f5) >>> 0; let t = a; t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
const h = new History(wsRoot);
let seq = 0, appends = 0;
process.stdout.write('ready\\n');
for (;;) {
  // Mostly small batches, sometimes a big one so a kill can land inside a long write.
  const big = rand() < 0.03;
  const n = big ? 2 : 1 + Math.floor(rand() * 5);
  const pad = 'é'.repeat(Math.floor(rand() * (big ? 150_000 : 300)));
  const evs = [];
  for (let k = 0; k < n; k++, seq++)
    evs.push({ time: new Date().toISOString(), event: 'SYNC', lora_id: 'run' + run, name: 'LoRA_' + pad, match_idx: seq });
  await h.append(evs);
  appends++;
  process.stdout.write(appends + ' ' + seq + '\\n'); // stdout to a pipe is synchronous on Linux
}
`,
    );
    const LANES = 2; // two workspaces killed side by side: 20 kills in half the wall time
    let torn = 0;
    const lane = async (laneNo: number): Promise<Map<string, number>> => {
      const ws = path.join(root, `ws${laneNo}`);
      const h = new History(ws);
      const rand = prng(20251204 + laneNo);
      const kept = new Map<string, number>(); // run -> events present after its kill
      for (let run = laneNo; run < 20; run += LANES) {
        const child = spawn(process.execPath, ['--import', 'tsx', script, ws, String(run), String(run + 1)], {
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        let err = '';
        child.stderr.on('data', (d: Buffer) => (err += d.toString()));
        const exited = new Promise<NodeJS.Signals | null>((res) => child.on('exit', (_c, sig) => res(sig)));
        await new Promise<void>((res, rej) => {
          child.stdout.on('data', (d: Buffer) => {
            out += d.toString();
            if (out.startsWith('ready\n')) res();
          });
          child.on('exit', () => rej(new Error(`child exited before ready: ${err}`)));
        });
        await new Promise((res) => setTimeout(res, Math.floor(rand() * 250)));
        child.kill('SIGKILL');
        assert.equal(await exited, 'SIGKILL', `child ended on its own: ${err}`);

        const done = out.split('\n').slice(1, -1); // complete lines after 'ready'
        const reported = done.length ? Number(done[done.length - 1].split(' ')[1]) : 0;

        if ((await h.repair()) > 0) torn++;
        const text = await fsp.readFile(h.path, 'utf8').catch(() => '');
        assert.ok(text === '' || text.endsWith('\n'), 'after repair the log ends with a newline');
        const r = await h.read();
        assert.equal(r.skippedLines, 0, `run ${run}: file does not parse cleanly after repair`);

        // Earlier runs are untouched; this run's events form a gap-free prefix covering all it reported.
        const byRun = new Map<string, number[]>();
        for (const e of r.events) {
          const list = byRun.get(e.lora_id) ?? [];
          list.push(e.match_idx as number);
          byRun.set(e.lora_id, list);
        }
        for (const [id, count] of kept) assert.equal(byRun.get(id)?.length ?? 0, count, `${id} changed later`);
        const mine = byRun.get(`run${run}`) ?? [];
        assert.deepEqual(
          mine,
          Array.from({ length: mine.length }, (_, i) => i),
          `run ${run}: gaps or reordering`,
        );
        assert.ok(mine.length >= reported, `run ${run}: reported ${reported} written, only ${mine.length} present`);
        kept.set(`run${run}`, mine.length);
      }
      return kept;
    };
    const counts = (await Promise.all(Array.from({ length: LANES }, (_, i) => lane(i)))).flatMap((m) => [
      ...m.values(),
    ]);
    assert.equal(counts.length, 20);
    assert.ok(
      counts.filter((n) => n > 0).length >= 10,
      `most children should have written something: ${counts.join(',')}`,
    );
    // Informational: how many kills left a torn line (timing-dependent, usually 0; not asserted).
    console.log(`      crash test: ${torn}/20 kills left a torn line; events kept per run: ${counts.join(',')}`);
  });
});
