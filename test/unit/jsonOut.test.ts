/**
 * JSON written as it is made (cli/jsonOut.ts): the same bytes as `JSON.stringify(value, null, 2)` and
 * a newline, for the CLI's real reports of a workspace written by real torch and for every edge of
 * JSON.stringify's rules; the text in chunks, the sink's pace respected, a gone sink not written to.
 */
import { strict as assert } from 'node:assert';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { writeJson, WALKED_LEVELS } from '../../server/src/cli/jsonOut';
import { Workspace } from '../../server/src/engine/workspace';
import { toSarif } from '../../server/src/cli/sarif';

/** A sink that keeps what it is given, each write apart; `delay` makes it a slow pipe. */
class Sink extends Writable {
  writes: string[] = [];
  maxPending = 0;
  constructor(opts: { highWaterMark?: number; delay?: boolean } = {}) {
    super({ decodeStrings: false, highWaterMark: opts.highWaterMark });
    this.delay = !!opts.delay;
  }
  private readonly delay: boolean;
  override _write(chunk: string, _enc: BufferEncoding, cb: (e?: Error) => void): void {
    this.writes.push(chunk);
    this.maxPending = Math.max(this.maxPending, this.writableLength);
    if (this.delay) setImmediate(cb);
    else cb();
  }
  get text(): string {
    return this.writes.join('');
  }
}

async function written(value: object, levels?: number, sink = new Sink()): Promise<Sink> {
  await writeJson(value, sink, levels);
  return sink;
}

const expected = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;

/** Every rule of JSON.stringify a report could meet, at several depths. */
function edgeCases(): object {
  const withToJson = { toJSON: (key: string) => ({ key, note: 'from toJSON' }) };
  const sparse: unknown[] = [1];
  sparse[3] = 'after a hole';
  const arrayWithProps = Object.assign([1, 2], { extra: 'not written' });
  return {
    empty_object: {},
    empty_array: [],
    nested_empty: [[], {}, [[]], { a: {} }],
    scalars: [0, -0, 1.5, -1e21, 1e-7, Number.MAX_SAFE_INTEGER, true, false, null, '', 'text'],
    not_finite: [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY],
    left_out: { u: undefined, f: () => 1, s: Symbol('x'), kept: 1 },
    nulls_in_arrays: [undefined, () => 1, Symbol('y'), 2],
    only_left_out: { u: undefined },
    strings: [
      'quote " backslash \\ tab \t newline \n',
      'line\u2028separator\u2029',
      '\u0000\u001f',
      '😀 emoji',
      'lone \ud800 surrogate',
      '🌟_EINSTEIN_HALL/LoRA.pt',
    ],
    dates: [new Date(Date.UTC(2025, 11, 4, 10, 30)), { at: new Date(0) }],
    to_json: withToJson,
    to_json_in_array: [withToJson, { deeper: withToJson }],
    boxed: [Object(1), Object('s'), Object(false)],
    sparse,
    array_with_props: arrayWithProps,
    numeric_keys: { 2: 'b', 1: 'a', x: 'c' },
    map_and_set: [new Map([[1, 2]]), new Set([1])],
    deep: { a: { b: { c: { d: [{ e: [1, { f: 'g' }] }] } } } },
  };
}

describe('writeJson: JSON written as it is made', () => {
  it('writes exactly what JSON.stringify(value, null, 2) does, and a newline, whatever the depth walked', async () => {
    const v = edgeCases();
    for (const levels of [0, 1, 2, 3, 4, 8])
      assert.equal((await written(v, levels)).text, expected(v), `levels ${levels}`);
    // A root array, an empty root, a root with toJSON.
    for (const root of [[1, [2, { a: 3 }], 'x'], {}, [], { toJSON: () => ({ replaced: true }) }, new Date(0)])
      assert.equal((await written(root)).text, expected(root), JSON.stringify(root));
  });

  it('fails where JSON.stringify fails: a BigInt, a cycle', async () => {
    await assert.rejects(written({ files: [{ n: 1n }] }), TypeError);
    const cyclic: Record<string, unknown> = { a: [] };
    (cyclic.a as unknown[]).push({ back: cyclic });
    await assert.rejects(written(cyclic, 1), TypeError);
  });

  it("writes the CLI's reports of a workspace written by real torch byte for byte as before", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lora-jsonout-'));
    try {
      cpSync(join(__dirname, '..', 'fixtures', 'workspace'), dir, { recursive: true });
      const ws = await Workspace.open(dir);
      await ws.scan();
      const r = await ws.report();
      assert.ok(r.files.length > 0 && r.loras.length > 0, 'a report with files and LoRAs');
      const v = ws.verify();
      const sarif = toSarif(r.root, '0.0.0', r.files, r.loras);
      for (const [name, value, levels] of [
        ['status', r, WALKED_LEVELS],
        ['verify', v, WALKED_LEVELS],
        ['plan', { plan: ws.plan() }, WALKED_LEVELS],
        ['sarif', sarif, 4],
      ] as Array<[string, object, number]>)
        assert.equal((await written(value, levels)).text, expected(value), name);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('writes a large report in chunks, never the whole text at once', async () => {
    const files = Array.from({ length: 20_000 }, (_, i) => ({
      path: `🌟_TEAM_${i % 97}/LoRA_${i}_copy.pt`,
      status: i % 5 ? 'IN_SYNC' : 'STALE',
      issues: i % 5 ? [] : [{ type: 'TENSOR_MISMATCH', detail: `layers.${i % 8}.lora_A differs\nfrom the source` }],
    }));
    const report = { root: '/ws', files, loras: [] };
    const sink = await written(report);
    const whole = expected(report);
    assert.equal(sink.text, whole);
    assert.ok(sink.writes.length > 20, `${sink.writes.length} writes`);
    const longest = Math.max(...sink.writes.map((w) => w.length));
    assert.ok(longest < whole.length / 20, `the longest write is ${longest} of ${whole.length} characters`);
  });

  it("keeps to a slow sink's pace: waits for it to drain instead of queueing the whole text", async () => {
    const files = Array.from({ length: 5_000 }, (_, i) => ({ path: `team/${i}.pt`, message: 'x'.repeat(100) }));
    const sink = new Sink({ highWaterMark: 1024, delay: true });
    await written({ files }, WALKED_LEVELS, sink);
    const whole = expected({ files });
    assert.equal(sink.text, whole);
    // At most one chunk queued beyond what the sink holds: writeJson waited at each full buffer.
    assert.ok(sink.maxPending < whole.length / 4, `${sink.maxPending} of ${whole.length} characters queued`);
  });

  it('stops, without an error, once the sink is gone (a reader that closed the pipe)', async () => {
    const files = Array.from({ length: 20_000 }, (_, i) => ({ path: `team/${i}.pt`, status: 'IN_SYNC' }));
    const sink = new Sink();
    sink.on('error', () => undefined);
    let writes = 0;
    const write = sink.write.bind(sink);
    sink.write = ((chunk: string) => {
      writes++;
      const ok = write(chunk);
      sink.destroy(); // the first write is the last this reader takes
      return ok;
    }) as typeof sink.write;
    await writeJson({ files }, sink);
    assert.equal(writes, 1, 'nothing written after the sink was destroyed');
    // A sink already gone before the first write gets nothing at all.
    const gone = new Sink();
    gone.on('error', () => undefined);
    gone.destroy();
    let calls = 0;
    gone.write = (() => ++calls > 0) as typeof gone.write;
    await writeJson({ files: [1] }, gone);
    assert.equal(calls, 0, 'no write to a destroyed sink');
  });
});
