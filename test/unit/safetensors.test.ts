import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { open, readFile, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormatError, type FormatErrorCode } from '../../server/src/formats/errors';
import {
  isSafetensors,
  readSafetensors,
  readSafetensorsFile,
  writeSafetensors,
  type SafetensorsFile,
  type SafetensorsInput,
} from '../../server/src/formats/safetensors';
import { hasTorch, PY } from '../support/python';

/**
 * Writes reference files by following the spec in plain Python (the safetensors package is not
 * installed here), with tensor bytes taken from real torch tensors; `check` parses a file written by
 * our writer in plain Python + torch.frombuffer and compares every tensor to the originals.
 */
const PY_SCRIPT = String.raw`
import hashlib, json, struct, sys, torch

torch.manual_seed(1234)
T = {
    'f32': torch.randn(2, 3),
    'f16': torch.randn(3, 2).half(),
    'bf16': torch.randn(5).to(torch.bfloat16),
    'i64': torch.tensor([[1, -2], [3, 2**40]], dtype=torch.int64),
    'bool': torch.tensor([True, False, True]),
    'scalar': torch.tensor(3.5),
    'empty': torch.zeros(0, 4),
    'f64': torch.randn(2, dtype=torch.float64),
    'i32': torch.tensor([7, -9, 2**31 - 1], dtype=torch.int32),
    'i16': torch.tensor([-3, 300], dtype=torch.int16),
    'i8': torch.tensor([-128, 127, 0], dtype=torch.int8),
    'u8': torch.tensor([255, 1], dtype=torch.uint8),
    'lora_\U0001F3AF.weight': torch.randn(2, 2),
}
DT = {torch.float64: 'F64', torch.float32: 'F32', torch.float16: 'F16', torch.bfloat16: 'BF16',
      torch.int64: 'I64', torch.int32: 'I32', torch.int16: 'I16', torch.int8: 'I8',
      torch.uint8: 'U8', torch.bool: 'BOOL'}
BACK = {v: k for k, v in DT.items()}

def raw(t):
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.contiguous().numpy().tobytes()

def write(path, names, header_order, metadata, **dumps):
    offs, buf = {}, b''
    for n in names:
        b = raw(T[n]); offs[n] = [len(buf), len(buf) + len(b)]; buf += b
    header = {}
    if metadata is not None:
        header['__metadata__'] = metadata
    for n in header_order:
        header[n] = {'dtype': DT[T[n].dtype], 'shape': list(T[n].shape), 'data_offsets': offs[n]}
    h = json.dumps(header, **dumps).encode('utf-8')
    h += b' ' * (-len(h) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + buf)

def describe(t):
    return {'torch': str(t.dtype).replace('torch.', ''), 'shape': list(t.shape),
            'sha256': hashlib.sha256(raw(t)).hexdigest()}

mode = sys.argv[1]
if mode == 'gen':
    d = sys.argv[2]
    names = [n for n in T if not n.startswith('lora_')]
    # Header order differs from data order, so the reader must not assume they agree.
    write(d + '/ref.safetensors', names, list(reversed(names)),
          {'format': 'pt', 'note': 'caf\u00e9 "quoted" \\ back'}, ensure_ascii=True)
    write(d + '/compact.safetensors', ['lora_\U0001F3AF.weight', 'empty', 'bf16'],
          ['bf16', 'lora_\U0001F3AF.weight', 'empty'], None, separators=(',', ':'), ensure_ascii=False)
    print(json.dumps({n: describe(t) for n, t in T.items()}))
else:
    data = open(sys.argv[2], 'rb').read()
    n = struct.unpack('<Q', data[:8])[0]
    hb = data[8:8 + n]
    header = json.loads(hb.decode('utf-8'), object_pairs_hook=lambda kv: kv)
    buf = data[8 + n:]
    compact = json.dumps(json.loads(hb), separators=(',', ':'), ensure_ascii=False).encode('utf-8')
    res = {'headerLen': n, 'padOk': n % 8 == 0 and hb.rstrip(b' ') == compact and len(hb) - len(compact) < 8,
           'keys': [k for k, _ in header], 'metadata': None, 'tensors': {}}
    end = 0
    for name, info in header:
        if name == '__metadata__':
            res['metadata'] = dict(info)
            continue
        info = dict(info)
        dt = BACK[info['dtype']]
        b, e = info['data_offsets']
        end = max(end, e)
        if e == b:
            t = torch.empty(info['shape'], dtype=dt)
        else:
            t = torch.frombuffer(bytearray(buf[b:e]), dtype=dt).reshape(info['shape'])
        ref = T[name]
        res['tensors'][name] = {'equal': t.dtype == ref.dtype and t.shape == ref.shape and torch.equal(t, ref),
                                'dtype': str(t.dtype)}
    res['bufferCovered'] = end == len(buf)
    print(json.dumps(res))
`;

interface PyDesc {
  torch: string;
  shape: number[];
  sha256: string;
}
interface PyCheck {
  headerLen: number;
  padOk: boolean;
  keys: string[];
  metadata: Record<string, string> | null;
  tensors: Record<string, { equal: boolean; dtype: string }>;
  bufferCovered: boolean;
}

function py(...args: string[]): string {
  return execFileSync(PY, ['-c', PY_SCRIPT, ...args], { encoding: 'utf8' });
}

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

async function expectFormatError(p: Promise<unknown>, code: FormatErrorCode, message?: RegExp): Promise<FormatError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof FormatError, `expected FormatError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (message) assert.match(e.message, message);
    return e;
  }
  assert.fail('expected a FormatError, but reading succeeded');
}

describe('safetensors', function () {
  this.timeout(60_000);
  let dir: string;
  let desc: Record<string, PyDesc>;
  const LORA = 'lora_\u{1F3AF}.weight';

  before(function () {
    // Reference files are made with real torch tensors: without torch (npm packages only) the suite
    // is skipped; CI installs python3-torch and runs it.
    if (!hasTorch()) this.skip();
    dir = mkdtempSync(join(tmpdir(), 'safetensors-test-'));
    desc = JSON.parse(py('gen', dir)) as Record<string, PyDesc>;
  });
  after(() => {
    if (!dir) return;
    rmSync(dir, { recursive: true, force: true });
  });

  /** Writes raw bytes to a scratch file and reads them back. */
  async function readBytes(bytes: Uint8Array, name = 'scratch.safetensors'): Promise<SafetensorsFile> {
    const p = join(dir, name);
    await writeFile(p, bytes);
    return readSafetensorsFile(p);
  }

  async function writeToFile(
    path: string,
    tensors: SafetensorsInput[],
    metadata?: Record<string, string> | null,
  ): Promise<number> {
    const out = await open(path, 'w');
    try {
      return await writeSafetensors(out, tensors, metadata);
    } finally {
      await out.close();
    }
  }

  async function tensorBytes(path: string, begin: number, end: number): Promise<Buffer> {
    return (await readFile(path)).subarray(begin, end);
  }

  describe('reading files written by Python + torch', () => {
    it('reads names, dtypes, shapes, metadata and exact byte ranges of ref.safetensors', async () => {
      const path = join(dir, 'ref.safetensors');
      const f = await readSafetensorsFile(path);
      const bytes = await readFile(path);
      const names = Object.keys(desc).filter((n) => n !== LORA);
      assert.deepEqual(
        f.tensors.map((t) => t.name),
        [...names].reverse(),
        'header order is kept',
      );
      assert.deepEqual(f.metadata, { format: 'pt', note: 'caf\u00e9 "quoted" \\ back' });
      assert.equal(f.fileSize, bytes.length);
      assert.equal(f.dataStart, 8 + f.headerSize);
      assert.equal(f.headerSize % 8, 0);
      for (const t of f.tensors) {
        const d = desc[t.name];
        assert.equal(t.torchDtype, d.torch, t.name);
        assert.deepEqual(t.shape, d.shape, t.name);
        assert.equal(sha256(bytes.subarray(t.begin, t.end)), d.sha256, `bytes of ${t.name}`);
      }
      const byName = new Map(f.tensors.map((t) => [t.name, t]));
      assert.equal(byName.get('scalar')?.dtype, 'F32');
      assert.deepEqual(byName.get('scalar')?.shape, []);
      assert.equal(byName.get('scalar')!.end - byName.get('scalar')!.begin, 4, '0-d tensor has one element');
      assert.equal(byName.get('empty')!.end, byName.get('empty')!.begin);
      assert.equal(byName.get('bf16')?.dtype, 'BF16');
      assert.equal(byName.get('bool')?.dtype, 'BOOL');
      assert.equal(byName.get('f32')?.begin, f.dataStart, 'first tensor in data order starts the buffer');
    });

    it('reads a compact, non-ASCII header with no metadata', async () => {
      const path = join(dir, 'compact.safetensors');
      const f = await readSafetensorsFile(path);
      const bytes = await readFile(path);
      assert.equal(f.metadata, null);
      assert.deepEqual(
        f.tensors.map((t) => t.name),
        ['bf16', LORA, 'empty'],
      );
      for (const t of f.tensors) assert.equal(sha256(bytes.subarray(t.begin, t.end)), desc[t.name].sha256);
    });

    it('sniffs safetensors cheaply and rejects other heads', async () => {
      const bytes = await readFile(join(dir, 'ref.safetensors'));
      assert.equal(isSafetensors(bytes.subarray(0, 16), bytes.length), true);
      assert.equal(isSafetensors(bytes.subarray(0, 8), bytes.length), false, 'needs 9 bytes');
      assert.equal(isSafetensors(bytes.subarray(0, 16), 20), false, 'header longer than the file');
      assert.equal(isSafetensors(Buffer.from('PK\x03\x04\0\0\x08\x08\0', 'latin1'), 1000), false);
      assert.equal(isSafetensors(Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9]), 1 << 30), false);
    });
  });

  describe('writing', () => {
    it('writes a file that plain Python + torch reads back equal, with streamed and in-memory data', async () => {
      const src = join(dir, 'ref.safetensors');
      const f = await readSafetensorsFile(src);
      const fh = await open(src, 'r');
      const inputs: SafetensorsInput[] = [];
      try {
        // A different order than the source; half the tensors streamed from the source file.
        const order = ['bool', 'bf16', 'scalar', 'empty', 'i64', 'f16', 'f32', 'f64', 'i32', 'i16', 'i8', 'u8'];
        for (const [i, name] of order.entries()) {
          const t = f.tensors.find((x) => x.name === name)!;
          const data =
            i % 2 === 0 ? { fh, offset: t.begin, length: t.end - t.begin } : await tensorBytes(src, t.begin, t.end);
          inputs.push({ name, dtype: t.dtype, shape: t.shape, data });
        }
        const compact = await readSafetensorsFile(join(dir, 'compact.safetensors'));
        const lora = compact.tensors.find((t) => t.name === LORA)!;
        inputs.push({
          name: LORA,
          dtype: lora.dtype,
          shape: lora.shape,
          data: await tensorBytes(join(dir, 'compact.safetensors'), lora.begin, lora.end),
        });

        const out = join(dir, 'written.safetensors');
        const meta = { format: 'pt', 'k "q"': 'v\n\u00e9\u{1F3AF}', __proto__x: '' };
        const size = await writeToFile(out, inputs, meta);
        assert.equal(size, (await readFile(out)).length);

        const check = JSON.parse(py('check', out)) as PyCheck;
        assert.equal(check.padOk, true, 'header is compact JSON padded with spaces to a multiple of 8');
        assert.deepEqual(check.keys, ['__metadata__', ...order, LORA]);
        assert.deepEqual(check.metadata, meta);
        assert.equal(check.bufferCovered, true);
        assert.equal(Object.keys(check.tensors).length, order.length + 1);
        for (const [name, r] of Object.entries(check.tensors))
          assert.equal(r.equal, true, `${name} (${r.dtype}) equals the torch original`);
        assert.equal(check.tensors.bf16.dtype, 'torch.bfloat16');
        assert.equal(check.tensors.bool.dtype, 'torch.bool');

        // Our own reader accepts it, and reading + rewriting is byte-identical.
        const back = await readSafetensorsFile(out);
        assert.deepEqual(back.metadata, meta);
        const out2 = join(dir, 'rewritten.safetensors');
        const wfh = await open(out, 'r');
        try {
          await writeToFile(
            out2,
            back.tensors.map((t) => ({
              name: t.name,
              dtype: t.dtype,
              shape: t.shape,
              data: { fh: wfh, offset: t.begin, length: t.end - t.begin },
            })),
            back.metadata,
          );
        } finally {
          await wfh.close();
        }
        assert.equal(sha256(await readFile(out2)), sha256(await readFile(out)));
      } finally {
        await fh.close();
      }
    });

    it('writes an empty file and a metadata-only file that read back', async () => {
      const p = join(dir, 'empty.safetensors');
      assert.equal(await writeToFile(p, []), 16);
      assert.deepEqual((await readFile(p)).subarray(8).toString('latin1'), '{}      ');
      const f = await readSafetensorsFile(p);
      assert.deepEqual([f.tensors, f.metadata], [[], null]);
      await writeToFile(p, [], {});
      assert.deepEqual((await readSafetensorsFile(p)).metadata, {});
      const check = JSON.parse(py('check', p)) as PyCheck;
      assert.deepEqual(check.metadata, {});
    });

    it('refuses inputs that would make an invalid file', async () => {
      const p = join(dir, 'bad-input.safetensors');
      const one = (over: Partial<SafetensorsInput>): SafetensorsInput[] => [
        { name: 'a', dtype: 'F32', shape: [2], data: new Uint8Array(8), ...over },
      ];
      await expectFormatError(writeToFile(p, one({ data: new Uint8Array(7) })), 'SAFETENSORS_BAD_TENSOR', /7 bytes/);
      await expectFormatError(writeToFile(p, one({ shape: [-1] })), 'SAFETENSORS_BAD_TENSOR', /dimension/);
      await expectFormatError(writeToFile(p, one({ name: '__metadata__' })), 'SAFETENSORS_BAD_TENSOR', /reserved/);
      await expectFormatError(writeToFile(p, [...one({}), ...one({})]), 'SAFETENSORS_BAD_TENSOR', /duplicate/);
      await expectFormatError(writeToFile(p, one({ name: 'x\uD800' })), 'SAFETENSORS_BAD_HEADER', /surrogate/);
      await expectFormatError(writeToFile(p, one({ dtype: 'F12' as 'F32' })), 'SAFETENSORS_BAD_TENSOR', /dtype/);
      const src = await open(join(dir, 'compact.safetensors'), 'r');
      try {
        const { size } = await src.stat();
        await expectFormatError(
          writeToFile(p, one({ data: { fh: src, offset: size - 4, length: 8 } })),
          'SAFETENSORS_BAD_TENSOR',
          /ended 4 bytes early/,
        );
      } finally {
        await src.close();
      }
    });
  });

  describe('hostile input', () => {
    /** Builds a file from header text (padded unless told not to) and a data buffer of `dataLen` bytes. */
    function build(header: string, dataLen: number, opts: { len?: bigint; pad?: boolean } = {}): Buffer {
      let h = Buffer.from(header, 'utf8');
      if (opts.pad !== false) h = Buffer.concat([h, Buffer.alloc(-h.length & 7, 0x20)]);
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(opts.len ?? BigInt(h.length));
      return Buffer.concat([len, h, Buffer.alloc(dataLen, 0xab)]);
    }
    const T = (offsets: string, shape = '[2]', dtype = 'F32') =>
      `{"dtype":"${dtype}","shape":${shape},"data_offsets":${offsets}}`;
    const ok = (h: string, dataLen: number) => readBytes(build(h, dataLen));
    const bad = (h: string, dataLen: number, code: FormatErrorCode, re: RegExp) =>
      expectFormatError(ok(h, dataLen), code, re);

    it('accepts the minimal valid shapes these cases are built from', async () => {
      assert.equal((await ok(`{"a":${T('[0,8]')},"b":${T('[8,16]')}}`, 16)).tensors.length, 2);
      assert.equal((await ok('{}', 0)).tensors.length, 0);
      assert.equal(
        (await ok(`{"e":${T('[0,0]', '[0,4]')},"a":${T('[0,8]')},"z":${T('[8,8]', '[3,0]')}}`, 8)).tensors.length,
        3,
      );
      assert.equal(
        (
          await ok(
            `{"a":${T('[0,2]', '[2]', 'F8_E4M3')},"b":${T('[2,4]', '[2]', 'F8_E5M2')},"c":${T('[4,12]', '[1]', 'U64')}}`,
            12,
          )
        ).tensors[2].torchDtype,
        'uint64',
      );
      assert.equal(
        (await ok(`{"a\\"":${T('[0,8]')},"a\\\\":${T('[8,16]')}}`, 16)).tensors[1].name,
        'a\\',
        'escaped quote vs escaped backslash are different keys',
      );
      assert.deepEqual((await ok(`{"__metadata__":{"__proto__":"x"}}`, 0)).metadata, JSON.parse('{"__proto__":"x"}'));
      assert.equal(
        (await ok(`{"__metadata__":null}`, 0)).metadata,
        null,
        'null metadata is what Option<HashMap> allows',
      );
      assert.equal(
        (await ok(`{"a":${T('[0,0]', '[9007199254740991,0]')}}`, 0)).tensors[0].shape[0],
        Number.MAX_SAFE_INTEGER,
      );
    });

    it('rejects duplicate keys, including escape tricks', async () => {
      const dup = /duplicate key/;
      await bad(`{"a":${T('[0,8]')},"a":${T('[8,16]')}}`, 16, 'SAFETENSORS_BAD_HEADER', dup);
      await bad(`{"a\\"":${T('[0,8]')},"a\\u0022":${T('[8,16]')}}`, 16, 'SAFETENSORS_BAD_HEADER', dup);
      await bad(`{"\\u00e9":${T('[0,8]')},"\u00e9":${T('[8,16]')}}`, 16, 'SAFETENSORS_BAD_HEADER', dup);
      await bad(`{"\\ud83c\\udfaf":${T('[0,8]')},"\u{1F3AF}":${T('[8,16]')}}`, 16, 'SAFETENSORS_BAD_HEADER', dup);
      await bad(`{"a\\/b":${T('[0,8]')},"a/b":${T('[8,16]')}}`, 16, 'SAFETENSORS_BAD_HEADER', dup);
      await bad(`{"__metadata__":{},"\\u005f_metadata__":{}}`, 0, 'SAFETENSORS_BAD_HEADER', dup);
      await bad(`{"__metadata__":{"k":"1","k":"2"}}`, 0, 'SAFETENSORS_BAD_HEADER', dup);
      await bad(
        `{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}`,
        8,
        'SAFETENSORS_BAD_HEADER',
        dup,
      );
    });

    it('rejects gaps, overlaps, uncovered bytes and offsets outside the file', async () => {
      await bad(
        `{"a":${T('[0,8]')},"b":${T('[12,20]')}}`,
        20,
        'SAFETENSORS_BAD_TENSOR',
        /gap of 4 bytes after tensor "a"/,
      );
      await bad(`{"a":${T('[4,12]')}}`, 12, 'SAFETENSORS_BAD_TENSOR', /gap of 4 bytes at the start/);
      await bad(`{"a":${T('[0,8]')},"b":${T('[4,12]')}}`, 12, 'SAFETENSORS_BAD_TENSOR', /overlaps/);
      await bad(`{"a":${T('[0,8]')},"b":${T('[0,8]')}}`, 8, 'SAFETENSORS_BAD_TENSOR', /overlaps/);
      await bad(`{"a":${T('[0,8]')},"e":${T('[4,4]', '[0]')}}`, 8, 'SAFETENSORS_BAD_TENSOR', /overlaps/);
      await bad(`{"a":${T('[0,8]')}}`, 9, 'SAFETENSORS_BAD_TENSOR', /1 bytes at the end/);
      await bad('{}', 3, 'SAFETENSORS_BAD_TENSOR', /3 bytes at the end/);
      await bad(`{"a":${T('[0,8]')}}`, 7, 'SAFETENSORS_BAD_TENSOR', /outside/);
      await bad(`{"a":${T('[100000000000,100000000008]')}}`, 8, 'SAFETENSORS_BAD_TENSOR', /outside/);
      await bad(`{"a":${T('[8,0]')}}`, 8, 'SAFETENSORS_BAD_TENSOR', /after end/);
      await bad(`{"a":${T('[-8,0]')}}`, 8, 'SAFETENSORS_BAD_TENSOR', /negative/);
      await bad(`{"a":${T('[0,8.0]')}}`, 8, 'SAFETENSORS_BAD_TENSOR', /not an integer/);
      await bad(`{"a":${T('[0,8e0]')}}`, 8, 'SAFETENSORS_BAD_TENSOR', /not an integer/);
      await bad(`{"a":${T('[0,99999999999999999999]')}}`, 8, 'SAFETENSORS_BAD_TENSOR', /too large/);
      await bad(`{"a":${T('[0]')}}`, 8, 'SAFETENSORS_BAD_TENSOR', /two integers/);
      await bad(`{"a":${T('[0,8,8]')}}`, 8, 'SAFETENSORS_BAD_TENSOR', /two integers/);
      await bad(`{"a":${T('"0,8"')}}`, 8, 'SAFETENSORS_BAD_TENSOR', /two integers/);
    });

    it('rejects wrong span sizes, bad shapes and bad dtypes', async () => {
      await bad(`{"a":${T('[0,12]')}}`, 12, 'SAFETENSORS_BAD_TENSOR', /spans 12 bytes but shape \[2\] of F32 needs 8/);
      await bad(`{"a":${T('[0,8]', '[]')}}`, 8, 'SAFETENSORS_BAD_TENSOR', /needs 4/);
      await bad(`{"a":${T('[0,8]', '[-2]')}}`, 8, 'SAFETENSORS_BAD_TENSOR', /shape\[0\] is negative/);
      await bad(`{"a":${T('[0,8]', '[2,-1]')}}`, 8, 'SAFETENSORS_BAD_TENSOR', /shape\[1\] is negative/);
      await bad(`{"a":${T('[0,8]', '[2.0]')}}`, 8, 'SAFETENSORS_BAD_TENSOR', /not an integer/);
      await bad(`{"a":${T('[0,8]', '["2"]')}}`, 8, 'SAFETENSORS_BAD_TENSOR', /not an integer/);
      await bad(`{"a":${T('[0,8]', '2')}}`, 8, 'SAFETENSORS_BAD_TENSOR', /"shape" is not an array/);
      await bad(`{"a":${T('[0,8]', '[9007199254740992]')}}`, 8, 'SAFETENSORS_BAD_TENSOR', /too large/);
      // Product overflows a double: must still be caught exactly.
      await bad(
        `{"a":${T('[0,8]', '[4294967296,4294967296,1]')}}`,
        8,
        'SAFETENSORS_BAD_TENSOR',
        /needs 73786976294838206464/,
      );
      await bad(`{"a":${T('[0,8]', '[2]', 'F32x')}}`, 8, 'SAFETENSORS_BAD_TENSOR', /unknown dtype "F32x"/);
      await bad(`{"a":${T('[0,8]', '[2]', 'f32')}}`, 8, 'SAFETENSORS_BAD_TENSOR', /unknown dtype/);
      await bad(
        `{"a":{"dtype":4,"shape":[2],"data_offsets":[0,8]}}`,
        8,
        'SAFETENSORS_BAD_TENSOR',
        /"dtype" is not a string/,
      );
      await bad(`{"a":{"shape":[2],"data_offsets":[0,8]}}`, 8, 'SAFETENSORS_BAD_TENSOR', /exactly/);
      await bad(
        `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":1}}`,
        8,
        'SAFETENSORS_BAD_TENSOR',
        /unexpected field "extra"/,
      );
      await bad(`{"a":[0,8]}`, 8, 'SAFETENSORS_BAD_TENSOR', /not an object/);
      await bad(`{"format":"pt"}`, 0, 'SAFETENSORS_BAD_TENSOR', /tensor "format": entry is not an object/);
    });

    it('rejects bad metadata', async () => {
      await bad(`{"__metadata__":{"k":1}}`, 0, 'SAFETENSORS_BAD_HEADER', /value of "k" is not a string/);
      await bad(`{"__metadata__":{"k":null}}`, 0, 'SAFETENSORS_BAD_HEADER', /not a string/);
      await bad(`{"__metadata__":{"k":{"x":"y"}}}`, 0, 'SAFETENSORS_BAD_HEADER', /not a string/);
      await bad(`{"__metadata__":["k"]}`, 0, 'SAFETENSORS_BAD_HEADER', /not an object/);
      await bad(`{"__metadata__":"k"}`, 0, 'SAFETENSORS_BAD_HEADER', /not an object/);
    });

    it('rejects bad header lengths and header text', async () => {
      const h = `{"a":${T('[0,8]')}}`;
      await expectFormatError(
        readBytes(build(h, 8, { len: 0xffffffffffffffffn })),
        'SAFETENSORS_BAD_HEADER',
        /exceeds/,
      );
      await expectFormatError(readBytes(build(h, 8, { len: 100_000_001n })), 'SAFETENSORS_BAD_HEADER', /exceeds/);
      await expectFormatError(readBytes(build(h, 8, { len: 1000n })), 'SAFETENSORS_BAD_HEADER', /past the end/);
      await expectFormatError(readBytes(build('{}', 0, { len: 1n, pad: false })), 'SAFETENSORS_BAD_HEADER', /minimum/);
      await expectFormatError(readBytes(Buffer.alloc(7)), 'SAFETENSORS_BAD_HEADER', /too short/);
      await expectFormatError(readBytes(Buffer.alloc(0)), 'SAFETENSORS_BAD_HEADER', /too short/);
      await bad(` ${h}`, 8, 'SAFETENSORS_BAD_HEADER', /start with "\{"/);
      await bad(`\ufeff${h}`, 8, 'SAFETENSORS_BAD_HEADER', /start with "\{"/);
      await bad('[]', 0, 'SAFETENSORS_BAD_HEADER', /start with/);
      await bad(`${h},`, 8, 'SAFETENSORS_BAD_HEADER', /after the JSON object/);
      await bad(`{"a":${T('[0,8]')},}`, 8, 'SAFETENSORS_BAD_HEADER', /invalid JSON/);
      await bad(`{"a":${T('[0,8]')}`, 8, 'SAFETENSORS_BAD_HEADER', /invalid JSON/);
      await bad(`{'a':${T('[0,8]')}}`, 8, 'SAFETENSORS_BAD_HEADER', /string key/);
      await bad(`{"a\\x":${T('[0,8]')}}`, 8, 'SAFETENSORS_BAD_HEADER', /bad escape/);
      await bad(`{"a\\ud800":${T('[0,8]')}}`, 8, 'SAFETENSORS_BAD_HEADER', /surrogate/);
      await bad(`{"a\\udc00":${T('[0,8]')}}`, 8, 'SAFETENSORS_BAD_HEADER', /surrogate/);
      await bad(`{"a\tb":${T('[0,8]')}}`, 8, 'SAFETENSORS_BAD_HEADER', /control character/);
      await bad(`{"a":${T('[0,8]')}}\0\0\0`, 8, 'SAFETENSORS_BAD_HEADER', /after the JSON object/);
      await bad(`{"a":${'['.repeat(5000)}${']'.repeat(5000)}}`, 0, 'SAFETENSORS_BAD_HEADER', /nested too deeply/);
      const badUtf8 = Buffer.concat([Buffer.from('{"a\xff":', 'latin1'), Buffer.from(`${T('[0,8]')}}`)]);
      const file = build('', 8, { pad: false });
      const withBad = Buffer.concat([file.subarray(0, 8), badUtf8, file.subarray(8)]);
      withBad.writeBigUInt64LE(BigInt(badUtf8.length));
      await expectFormatError(readBytes(withBad), 'SAFETENSORS_BAD_HEADER', /UTF-8/);
    });

    it('rejects every truncation of a valid file', async () => {
      const bytes = await readFile(join(dir, 'compact.safetensors'));
      const p = join(dir, 'trunc.safetensors');
      await writeFile(p, bytes);
      await readSafetensorsFile(p);
      const codes = new Set<string>();
      for (let len = bytes.length - 1; len >= 0; len--) {
        await truncate(p, len);
        const e = await readSafetensorsFile(p).then(
          () => null,
          (err: unknown) => err,
        );
        assert.ok(e instanceof FormatError, `truncated to ${len} bytes: ${String(e)}`);
        assert.ok(e.code === 'SAFETENSORS_BAD_HEADER' || e.code === 'SAFETENSORS_BAD_TENSOR', e.code);
        if (len < 8 + readHeaderLen(bytes)) assert.equal(e.code, 'SAFETENSORS_BAD_HEADER', `truncated to ${len} bytes`);
        codes.add(e.code);
      }
      assert.equal(codes.size, 2);
    });

    it('never throws anything but FormatError on random byte flips (seeded)', async () => {
      const bytes = await readFile(join(dir, 'ref.safetensors'));
      const p = join(dir, 'flip.safetensors');
      await writeFile(p, bytes);
      const fh = await open(p, 'r+');
      let seed = 0x2545f491;
      const rand = (n: number): number => {
        // xorshift32: deterministic so a failure is reproducible.
        seed ^= seed << 13;
        seed >>>= 0;
        seed ^= seed >>> 17;
        seed ^= seed << 5;
        seed >>>= 0;
        return seed % n;
      };
      const counts = { ok: 0, header: 0, tensor: 0 };
      for (let i = 0; i < 3000; i++) {
        const copy = Buffer.from(bytes);
        const flips = 1 + rand(3);
        // Mostly hit the length prefix and header, where the parser lives.
        const span = rand(4) === 0 ? copy.length : Math.min(copy.length, 8 + readHeaderLen(bytes));
        for (let k = 0; k < flips; k++) copy[rand(span)] ^= 1 << rand(8);
        await fh.write(copy, 0, copy.length, 0);
        try {
          await readSafetensors(fh, copy.length);
          counts.ok++;
        } catch (e) {
          if (!(e instanceof FormatError)) throw new Error(`iteration ${i}: non-FormatError ${String(e)}`);
          if (e.code === 'SAFETENSORS_BAD_HEADER') counts.header++;
          else if (e.code === 'SAFETENSORS_BAD_TENSOR') counts.tensor++;
          else throw new Error(`iteration ${i}: unexpected code ${e.code}`);
        }
      }
      await fh.close();
      // Proves the loop exercised both outcomes rather than, say, always failing early.
      assert.ok(counts.ok > 0 && counts.header > 0 && counts.tensor > 0, JSON.stringify(counts));
    });
  });
});

function readHeaderLen(b: Buffer): number {
  return Number(b.readBigUInt64LE(0));
}
