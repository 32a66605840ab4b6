/**
 * The safety scan (server/src/formats/pickle/safetyScan.ts) on crafted opcode streams: what it names,
 * what it cannot resolve, namespace tampering, where it stops, that it agrees with the decoder on every
 * torch-written fixture (no false positive), and that it stays linear on hostile shapes. The hostile
 * corpus proven live against real torch is test/faults/unsafe.faults.test.ts.
 */
import { strict as assert } from 'node:assert';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodePickle } from '../../server/src/formats/pickle/decoder';
import { MODEL_LIMITS, scanPickles } from '../../server/src/formats/pickle/safetyScan';
import { scanFindings } from '../../server/src/formats/safety';
import { ZipReader } from '../../server/src/formats/zip/zipReader';
import { openCheckpoint } from '../../server/src/formats/checkpoint';
import { isFormatError } from '../../server/src/formats/errors';
import { LEGACY_HEAD, looksLegacy } from '../../server/src/formats/torch/legacy';
import { plainlySafe } from '../../server/src/formats/fileSafety';

const b = (s: string) => Buffer.from(s, 'latin1');
const u = (t: string) => Buffer.concat([Buffer.from([0x8c, t.length]), b(t)]);
const cat = (...p: Buffer[]) => Buffer.concat(p);
const labels = (x: Buffer, maxPickles?: number) => scanFindings(scanPickles(x, { maxPickles })).map((f) => f.global);

describe('safety scan', () => {
  it('names GLOBAL, STACK_GLOBAL (through DUP and every memo opcode), INST; OBJ/REDUCE/NEWOBJ are judged by what they call', () => {
    assert.deepEqual(labels(b('\x80\x02cposix\nsystem\nN\x85R.')), ['posix.system']);
    assert.deepEqual(labels(cat(b('\x80\x04'), u('os'), u('system'), b('\x93).'))), ['os.system']);
    assert.deepEqual(labels(cat(b('\x80\x04'), u('os'), b('\x94'), u('system'), b('\x94'), b('00h\x00h\x01\x93.'))), [
      'os.system',
    ]);
    assert.deepEqual(
      labels(cat(b('\x80\x04'), u('os'), b('p3\n0'), u('system'), b('2\x93.'))),
      ['system.system'],
      'DUP',
    );
    assert.deepEqual(labels(cat(b('\x80\x04'), u('os'), b('p3\n0'), u('eval'), b('g3\n\x94\x930.'))), [
      'eval.os', // memo index 0 (MEMOIZE) holds 'eval', GET 3 'os': STACK_GLOBAL(module='eval', name='os')
    ]);
    assert.deepEqual(labels(b("(S'x'\nios\nsystem\n.")), ['os.system']);
    assert.deepEqual(labels(b('(cos\nsystem\nNo.')), ['os.system']);
  });

  it('a STACK_GLOBAL of computed names, a call of what a call returned, and EXT codes are unresolved, hence unsafe', () => {
    const enc = (s: string) => cat(u('_codecs'), u('encode'), b('\x93'), u(s), u('rot13'), b('\x86R'));
    const computed = cat(b('\x80\x04'), enc('bf'), enc('flfgrz'), b('\x93.'));
    assert.deepEqual(labels(computed), ['unresolved STACK_GLOBAL at offset 68']);
    assert.deepEqual(labels(b('\x80\x02c_codecs\nencode\n)R)R.')), ['unresolved REDUCE at offset 21']);
    assert.deepEqual(labels(b('\x80\x02\x82\x01.')), ['unresolved EXT1 at offset 2']);
  });

  it('namespace tampering: BUILD/SETITEM/APPEND on what a global produced (allowlisted or not, through the memo); on built data, none', () => {
    const build = b("\x80\x02ctorch\n_utils\nq\x000h\x00}S'_rebuild_tensor_v2'\ncbuiltins\neval\nsb.");
    const f = scanFindings(scanPickles(build));
    assert.deepEqual(
      f.map((x) => [x.type, x.global]),
      [
        ['UNSAFE_GLOBAL', 'torch._utils'],
        ['UNSAFE_GLOBAL', 'builtins.eval'],
        ['NAMESPACE_TAMPERING', 'BUILD on torch._utils'],
      ],
    );
    assert.deepEqual(labels(b("ccollections\nOrderedDict\nS'k'\nNs.")), ['SETITEM on collections.OrderedDict']);
    assert.deepEqual(labels(b('c__builtin__\nset\nNa.')), ['APPEND on __builtin__.set']);
    assert.deepEqual(labels(b('ccollections\nOrderedDict\n)R}b.')), [], 'BUILD on an OrderedDict() is data');
  });

  it('goes on after errors Python raises after the payload; stops only where it cannot step; after STOP reads further pickles', () => {
    const payload = '\x80\x02cposix\nsystem\nN\x85R';
    assert.deepEqual(labels(b(`${payload}h\x63.`)), ['posix.system'], 'a memo key never stored');
    assert.deepEqual(labels(b(`${payload}X\xe8\x03\x00\x00abc`)), ['posix.system'], 'a truncated string');
    const s = scanPickles(b(`${payload}X\xe8\x03\x00\x00abc`));
    assert.equal(s.stuck?.truncated, true);
    assert.deepEqual(labels(b('\x80\x02N.\x80\x02cposix\nsystem\n.')), ['posix.system'], 'a second pickle');
    assert.deepEqual(labels(b('\x80\x02N.\x80\x02cposix\nsystem\n.'), 1), [], 'maxPickles');
    assert.deepEqual(labels(b(`${payload}\xff cnt\nsystem\n.`)), ['posix.system'], 'stuck at a non-opcode');
  });

  it('no finding where Python raises before anything runs: a call of a lost value, text that is no pickle, an undecodable name', () => {
    assert.deepEqual(labels(b('R\x93o.')), [], 'underflows');
    assert.deepEqual(labels(b('Notes for the trainers.\nThis file has a .pt name\n')), []);
    assert.deepEqual(labels(b('\x80\x02h\x05h\x06\x93R.')), [], 'memo keys never stored');
    assert.deepEqual(labels(b('c\xff\xfe\nx\n.')), [], 'invalid UTF-8 in a GLOBAL');
    assert.deepEqual(labels(b('c\nx\n.')), [], 'an empty module name');
    assert.deepEqual(labels(b('\x80\x02K\x01K\x02\x93.')), [], 'STACK_GLOBAL of ints');
  });

  it('agrees with the decoder on every torch-written fixture: the same names, no finding on a sound file', () => {
    const dir = join(__dirname, '..', 'fixtures', 'torch');
    let checked = 0;
    for (const n of readdirSync(dir)) {
      if (!n.endsWith('.pt')) continue;
      const bytes = readFileSync(join(dir, n));
      let pkl: Buffer | undefined;
      try {
        const z = ZipReader.fromBytes(bytes);
        const r = z.records.find((x) => x.name.endsWith('/data.pkl'));
        pkl = r && z.readInMemory(r, { checkCrc: false });
      } catch {
        continue;
      }
      if (!pkl) continue;
      const scan = scanPickles(pkl);
      const d = decodePickle(pkl);
      assert.deepEqual(
        scan.names.map((x) => `${x.module}.${x.name}`),
        d.globals.map((g) => `${g.module}.${g.name}`),
        n,
      );
      assert.equal(scan.pickles.length, 1, n);
      assert.equal(scan.pickles[0].end, pkl.length, `${n}: nothing after STOP`);
      assert.deepEqual(scan.unresolved, [], n);
      assert.deepEqual(scan.tampering, [], n);
      if (!n.startsWith('unsafe_') && n !== 'torchscript.pt') assert.deepEqual(scanFindings(scan), [], n);
      checked++;
    }
    assert.ok(checked >= 12, `${checked} fixtures`);
  });

  it('a legacy head is sniffed in pickle protocols 2 to 5 (a FRAME from 4), and nothing else', () => {
    const magic = LEGACY_HEAD.subarray(2); // LONG1 of the magic number
    const frame = (n: number) =>
      Buffer.concat([Buffer.from([0x95]), Buffer.from(new BigUint64Array([BigInt(n)]).buffer)]);
    const head = (...parts: Buffer[]) => Buffer.concat([...parts, b('.')]);
    for (const p of [2, 3]) assert.ok(looksLegacy(head(Buffer.from([0x80, p]), magic)), `protocol ${p}`);
    for (const p of [4, 5]) {
      assert.ok(looksLegacy(head(Buffer.from([0x80, p]), frame(13), magic)), `protocol ${p} with a FRAME`);
      // Python frames only 4 bytes or more; a pickler may leave the FRAME out.
      assert.ok(looksLegacy(head(Buffer.from([0x80, p]), magic)), `protocol ${p} without a FRAME`);
    }
    const wrong = Buffer.from(magic);
    wrong[5] ^= 1;
    assert.ok(!looksLegacy(head(Buffer.from([0x80, 4]), frame(13), wrong)), 'another number');
    assert.ok(!looksLegacy(head(Buffer.from([0x80, 6]), magic)), 'protocol 6');
    assert.ok(!looksLegacy(head(Buffer.from([0x80, 1]), magic)), 'protocol 1');
    assert.ok(!looksLegacy(Buffer.from([0x80, 4, 0x95, 13])), 'cut short');
  });

  it('the legacy fixture: its five pickles, and nothing of its storages, are scanned', () => {
    const bytes = readFileSync(join(__dirname, '..', 'fixtures', 'torch', 'legacy.pt'));
    assert.ok(bytes.subarray(0, LEGACY_HEAD.length).equals(LEGACY_HEAD));
    const s = scanPickles(bytes, { maxPickles: 5 });
    assert.equal(s.pickles.length, 5);
    assert.equal(s.stuck, undefined);
    assert.deepEqual(scanFindings(s), []);
  });

  it('a legacy header with a wrong protocol value, then a payload in the system-info pickle: still scanned (each of the five whatever the one before held)', async () => {
    const evil = cat(LEGACY_HEAD, b('.'), b('\x80\x02K\x07.'), b('\x80\x02cposix\nsystem\n.'), b('\x80\x02N.'));
    assert.deepEqual(labels(evil, 5), ['posix.system']);
  });

  it('linear on hostile shapes: deep MARKs, a wide memo, sparse memo indices, many names', () => {
    const n = 400_000;
    const cases: Array<[string, Buffer]> = [
      ['marks', Buffer.alloc(n, 0x28)],
      [
        'memo',
        cat(
          b('N'),
          Buffer.from(Array.from({ length: n / 5 }, (_, i) => [0x72, i & 255, (i >> 8) & 255, i >> 16, 0]).flat()),
        ),
      ],
      [
        'sparse memo',
        cat(b('N'), Buffer.from(Array.from({ length: n / 5 }, (_, i) => [0x72, 255, 255, i & 255, 0xff]).flat())),
      ],
      ['names', b(Array.from({ length: n / 12 }, (_, i) => `cm${i}\nn\n0`).join(''))],
    ];
    for (const [what, x] of cases) {
      const t0 = performance.now();
      scanPickles(x);
      const ms = performance.now() - t0;
      assert.ok(ms < 1500, `${what}: ${ms} ms for ${x.length} bytes`);
    }
  });

  it('past its bounds the model stops with a finding (nothing after can be traced), and names are still read', () => {
    const deep = cat(Buffer.alloc(MODEL_LIMITS.stack + 10, 0x4e), b('cposix\nsystem\n.'));
    const f = labels(deep);
    assert.equal(f.length, 2, f.join());
    assert.equal(f[0], 'posix.system');
    assert.match(f[1], /^unresolved NONE at offset/);
    // An index far past the dense memo goes to the Map: no large allocation from one opcode.
    const far = b('N\x72\xf0\xff\xff\x7f\x6a\xf0\xff\xff\x7f\x30.');
    assert.deepEqual(labels(far), []);
  });

  it('a zip our reader refuses is still judged: each local data.pkl record is scanned', async () => {
    const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const dir = await mkdtemp(join(tmpdir(), 'lora-scan-'));
    try {
      for (const [fixture, want] of [
        ['unsafe_posix_system.pt', ['posix.system']],
        ['seed_source.pt', undefined],
      ] as const) {
        const bytes = Buffer.from(readFileSync(join(__dirname, '..', 'fixtures', 'torch', fixture)));
        bytes.writeUInt32LE(bytes.length + 100, bytes.length - 22 + 16); // the central directory: past the end
        bytes.writeBigUInt64LE(BigInt(bytes.length + 100), bytes.length - 22 - 20 - 56 + 48);
        await writeFile(join(dir, fixture), bytes);
        const e = await openCheckpoint(join(dir, fixture)).then(
          () => undefined,
          (x: unknown) => x,
        );
        assert.ok(isFormatError(e) && /^ZIP_/.test(e.code), `${fixture}: ${e}`);
        assert.deepEqual(
          e.unsafe?.map((x) => x.global),
          want,
          fixture,
        );
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('never throws, whatever the bytes', () => {
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    for (let i = 0; i < 3000; i++) {
      const x = Buffer.from(Array.from({ length: 1 + Math.floor(rand() * 200) }, () => Math.floor(rand() * 256)));
      scanFindings(scanPickles(x));
    }
  });

  it('openCheckpoint: a plain pickle that names code throws with the findings attached; a benign one without', async () => {
    const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const dir = await mkdtemp(join(tmpdir(), 'lora-scan-'));
    try {
      await writeFile(join(dir, 'evil.pt'), b('\x80\x02cposix\nsystem\nN\x85R.'));
      await writeFile(join(dir, 'benign.pt'), b('\x80\x02}q\x00.'));
      for (const [f, want] of [
        ['evil.pt', ['posix.system']],
        ['benign.pt', undefined],
      ] as const) {
        const e = await openCheckpoint(join(dir, f)).then(
          () => undefined,
          (x: unknown) => x,
        );
        assert.ok(isFormatError(e), f);
        assert.equal(e.code, 'NOT_A_CHECKPOINT');
        assert.deepEqual(
          e.unsafe?.map((x) => x.global),
          want,
        );
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/**
 * The scan is skipped for a data.pkl the decoder shows plainly safe (fileSafety.ts plainlySafe): that
 * must never hide a finding. Checked against the scan itself on every data.pkl the fixtures hold, on
 * the crafted hostile pickles above, and on thousands of corruptions and splices of both.
 */
describe('plainlySafe: the skipped scan would have found nothing', () => {
  const fixturePickles = (): Array<{ name: string; pkl: Buffer }> => {
    const out: Array<{ name: string; pkl: Buffer }> = [];
    const walk = (dir: string): void => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (/\.(pt|bin|pth|ckpt)$/.test(e.name)) {
          try {
            const z = ZipReader.fromBytes(readFileSync(p));
            const r = z.records.find((x) => x.name.endsWith('/data.pkl'));
            const pkl = r && z.readInMemory(r, { checkCrc: false });
            if (pkl) out.push({ name: p, pkl: Buffer.from(pkl) });
          } catch {
            // not a zip we read: not a data.pkl case
          }
        }
      }
    };
    walk(join(__dirname, '..', 'fixtures'));
    return out;
  };
  const hostile = [
    b('\x80\x02cposix\nsystem\nN\x85R.'),
    cat(b('\x80\x04'), u('os'), u('system'), b('\x93).')),
    b('\x80\x02c_codecs\nencode\n)R)R.'),
    b('\x80\x02\x82\x01.'),
    b("\x80\x02ctorch\n_utils\nq\x000h\x00}S'_rebuild_tensor_v2'\ncbuiltins\neval\nsb."),
    b("ccollections\nOrderedDict\nS'k'\nNs."),
    b('c__builtin__\nset\nNa.'),
    b('(cos\nsystem\nNo.'),
    b("(S'x'\nios\nsystem\n."),
    b('\x80\x02ccollections\nOrderedDict\n)R)R.'),
    b('\x80\x02ccollections\nOrderedDict\n)R.\x80\x02cposix\nsystem\nN\x85R.'),
  ];
  const verdict = (x: Buffer): { plain: boolean; decoded: boolean } => {
    let d: ReturnType<typeof decodePickle>;
    try {
      d = decodePickle(x);
    } catch {
      return { plain: false, decoded: false };
    }
    return { plain: plainlySafe(d, x.length), decoded: true };
  };
  const check = (x: Buffer, what: string): boolean => {
    const v = verdict(x);
    if (!v.plain) return false;
    const scan = scanPickles(x);
    assert.deepEqual(scanFindings(scan), [], `${what}: plainly safe, yet the scan finds something`);
    assert.equal(scan.pickles.length, 1, what);
    assert.equal(scan.pickles[0].end, x.length, what);
    return true;
  };

  it('every sound torch-written data.pkl is plainly safe; every hostile one is not', () => {
    const fx = fixturePickles();
    assert.ok(fx.length >= 40, `${fx.length} fixture pickles`);
    let plain = 0;
    for (const { name, pkl } of fx) {
      const findings = scanFindings(scanPickles(pkl));
      if (check(pkl, name)) plain++;
      else
        assert.ok(findings.length > 0 || !verdict(pkl).decoded, `${name}: sound and decodable, yet not plainly safe`);
    }
    assert.ok(plain >= 35, `${plain} plainly safe`);
    for (const h of hostile) assert.equal(verdict(h).plain, false, JSON.stringify(h.toString('latin1')));
  });

  it('never hides a finding: corruptions and hostile splices of real pickles', () => {
    let seed = 11;
    const rand = (n: number) => Math.floor(((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * n);
    const bases = fixturePickles().map((f) => f.pkl);
    const pieces = [
      b('cposix\nsystem\n'),
      b('cbuiltins\neval\n'),
      b('ctorch\n_utils\n'),
      cat(u('os'), u('system'), b('\x93')),
      b(')R'),
      b('R'),
      b('b'),
      b('s'),
      b('a'),
      b('\x82\x01'),
      b('h\x00'),
      b('2'),
      b('0'),
      b('.'),
      b('\x81'),
      b('o'),
      b('('),
    ];
    let plain = 0;
    let decodedNotPlain = 0;
    for (let i = 0; i < 6000; i++) {
      const base = bases[rand(bases.length)];
      let x = Buffer.from(base);
      const kind = rand(4);
      const at = rand(x.length);
      if (kind === 0) x[at] = rand(256);
      else if (kind === 1) x = cat(x.subarray(0, at), pieces[rand(pieces.length)], x.subarray(at));
      else if (kind === 2) x = cat(x.subarray(0, at), x.subarray(Math.min(x.length, at + 1 + rand(8))));
      else x = cat(x.subarray(0, at), hostile[rand(hostile.length)].subarray(2), x.subarray(at));
      if (check(x, `mutation ${i} (kind ${kind} at ${at})`)) plain++;
      else if (verdict(x).decoded) decodedNotPlain++;
    }
    // Both sides are exercised: many corruptions still decode plainly safe (a changed value), and
    // many decode but are not plainly safe (a name, a call, trailing bytes).
    assert.ok(plain > 300, `${plain} plainly safe`);
    assert.ok(decodedNotPlain > 100, `${decodedNotPlain} decoded, not plainly safe`);
  });

  it('openCheckpoint reports the same findings as a scan of every fixture data.pkl', async () => {
    for (const { name, pkl } of fixturePickles()) {
      const want = scanFindings(scanPickles(pkl)).map((f) => f.global);
      let got: string[];
      try {
        const c = await openCheckpoint(name);
        got = c.unsafe.map((f) => f.global);
        await c.close();
      } catch (e) {
        if (!isFormatError(e)) throw e;
        got = (e.unsafe ?? []).map((f) => f.global);
      }
      assert.deepEqual(got.slice(0, want.length), want, name);
    }
  });
});
