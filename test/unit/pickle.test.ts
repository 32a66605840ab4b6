/**
 * Pickle codec against real CPython (and real torch.save) output: decoded values, byte-identical
 * protocol-2 round trips, Python loading our output, and hostile inputs.
 */
import { strict as assert } from 'node:assert';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FormatError, type FormatErrorCode } from '../../server/src/formats/errors';
import { decodePickle } from '../../server/src/formats/pickle/decoder';
import { encodeLong, encodePickle } from '../../server/src/formats/pickle/encoder';
import * as N from '../../server/src/formats/pickle/nodes';
import type { PyNode } from '../../server/src/formats/pickle/nodes';
import { OP } from '../../server/src/formats/pickle/opcodes';
import { prng } from '../../server/src/demo/loraTree';
import { PY } from '../support/python';

/** Writes pickles into argv[1] and prints a JSON manifest: renders computed by Python itself. */
/** One Python `render(o)` for both generators: an exact text form of a value; `extra` adds a case. */
function pyRender(extra: string): string {
  return String.raw`def render(o):
    if o is None: return 'None'
    if o is True: return 'True'
    if o is False: return 'False'
    if isinstance(o, int): return 'int:%d' % o
    if isinstance(o, float): return 'float:' + struct.pack('>d', o).hex()
    if isinstance(o, str): return 'str:' + o.encode('utf-16-le', 'surrogatepass').hex()
    if isinstance(o, bytearray): return 'bytearray:' + bytes(o).hex()
    if isinstance(o, bytes): return 'bytes:' + o.hex()
    if isinstance(o, collections.OrderedDict): return 'odict{' + ','.join(render(k) + ':' + render(v) for k, v in o.items()) + '}'
    if isinstance(o, dict): return '{' + ','.join(render(k) + ':' + render(v) for k, v in o.items()) + '}'
    if isinstance(o, list): return '[' + ','.join(render(x) for x in o) + ']'
    if isinstance(o, tuple): return '(' + ','.join(render(x) for x in o) + ')'
    if isinstance(o, frozenset): return 'frozenset{' + ','.join(sorted(render(x) for x in o)) + '}'
    if isinstance(o, set): return 'set{' + ','.join(sorted(render(x) for x in o)) + '}'
${extra}
    raise TypeError(type(o))`;
}

const GENERATOR = String.raw`
import pickle, sys, os, json, struct, collections, unicodedata, zipfile, datetime, pickletools, io
out = sys.argv[1]

${pyRender('')}

INTS = [0, 1, 255, 256, 65535, 65536, 2**31 - 1, -2**31, 2**31, -2**31 - 1, -1, -128, -256, -2**40, 2**40, 2**63, 2**64, 2**70, -2**70, 2**2000, -2**2000]
shared = [1, 'two']
value = {
    'ints': INTS,
    'floats': [1.0, -0.0, 0.1, 1e300, -1e-300, float('nan'), float('inf'), -float('inf')],
    'consts': [True, False, None],
    'strs': ['', 'a', 'h\u00e9llo', 'emoji \U0001F3AF\U0001F19A', 'T\u00fcrk\u00e7e \u0130\u0131\u015e\u011f', unicodedata.normalize('NFD', 'caf\u00e9 \u00c5'),
             '\ud800 lone \udfff', 'back\\slash\nnew\rline\x00\x1a', 'u\\u1234 \\U00012345', '\ufeffbom', 'x' * 300],
    'bytes': [b'', b'\x00\xff abc', b'a', bytearray(b'xy'), bytearray()],
    'tuples': [(), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)],
    'nested': {'a': {'b': [1, (2, [3, {'c': None}])]}, 'd': [[], {}, ()]},
    'set': {1, 2, 'x'}, 'fset': frozenset([3, 4]), 'eset': set(), 'efset': frozenset(),
    'odict': collections.OrderedDict([('z', 1), ('a', 2)]),
    'odict1001': collections.OrderedDict((i, i) for i in range(1001)),
    'list1001': list(range(1001)), 'dict1001': {i: i for i in range(1001)},
    'list2000': list(range(2000)), 'dict2000': {i: -i for i in range(2000)}, 'dict1000': {i: None for i in range(1000)},
    'shared': [shared, shared],
    'many_memo': ['s%d' % i for i in range(300)],
}
value['many_memo'] += value['many_memo'][:]

cases = []
def add(name, data, render_value=None, note=''):
    fn = os.path.join(out, name + '.pkl')
    with open(fn, 'wb') as f: f.write(data)
    cases.append({'name': name, 'file': fn, 'render': None if render_value is None else render(render_value), 'note': note})

for p in range(0, 6):
    add('value_p%d' % p, pickle.dumps(value, protocol=p), value)
for i, x in enumerate(INTS):
    add('int_%d_p2' % i, pickle.dumps(x, protocol=2), x)
    add('int_%d_p0' % i, pickle.dumps(x, protocol=0), x)

import numpy
add('numpy_float64_p2', pickle.dumps(numpy.float64(2.5), protocol=2))
add('numpy_array_p2', pickle.dumps(numpy.arange(6, dtype=numpy.int16).reshape(2, 3), protocol=2))
add('datetime_p2', pickle.dumps(datetime.datetime(2024, 2, 29, 13, 45, 7, 123456), protocol=2))
add('datetime_tz_p2', pickle.dumps({'when': datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc), 'day': datetime.date(2020, 1, 2)}, protocol=2))
add('onechar_keys_p2', pickle.dumps({str(i): {'0': i, 'x': str(i % 3)} for i in range(12)}, protocol=2))

class Ex:
    def __new__(cls, *args, **kwargs):
        o = object.__new__(cls); o.args = args; o.kwargs = kwargs; return o
    def __getnewargs_ex__(self): return (self.args, self.kwargs)
add('newobj_ex_p4', pickle.dumps(Ex(1, k='v'), protocol=4))

# Hand-written protocol-0/1 pickles of Python 2 vintage (STRING/BINSTRING, INST, OBJ, PERSID, DICT, POP_MARK).
crafted = {
    'py2_string': (b"(S'a\\nb\\x41\\'q\\\\'\np0\nS\"dq\"\nU\x03\xe9t\xe9T\x02\x00\x00\x00hil.", True),
    'py2_inst': (b"(I1\nI02\nicollections\nOrderedDict\np0\n.", False),
    'py1_obj': (b"(ccollections\nOrderedDict\nK\x01o.", False),
    'persid_text': (b"Pstorage_7\n.", False),
    'dict_op': (b"(S'k'\nI5\nS'j'\n(I1\nI2\n(I3\n1ld.", True),
    'long_text': (b"L-123456789012345678901234567890L\n.", True),
    'int_bools': (b"(I00\nI01\nI42\nI-7\nl.", True),
}
for name, (data, loadable) in crafted.items():
    pickletools.dis(data, out=io.StringIO())  # must be well-formed
    add(name, data, pickle.loads(data, encoding='latin1') if loadable else None)

have_torch = True
try:
    import torch, torch.nn as nn
except Exception:
    have_torch = False
if have_torch:
    torch.manual_seed(0)
    def save(name, obj):
        fn = os.path.join(out, name + '.pt')
        torch.save(obj, fn)
        with zipfile.ZipFile(fn) as z:
            pkl = [n for n in z.namelist() if n.endswith('/data.pkl')][0]
            add('torch_' + name, z.read(pkl))
    model = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2, bias=False))
    save('state_dict', model.state_dict())
    save('parameter', {'p': nn.Parameter(torch.randn(2, 3)), 'frozen': nn.Parameter(torch.ones(2), requires_grad=False)})
    base = torch.arange(24.).reshape(4, 6)
    save('views', {'base': base, 'row': base[1], 't': base.t(), 'cols': base[:, 2:4], 'scalar': torch.tensor(3.5)})
    save('lora', {'lora_A': torch.zeros(8, 4, dtype=torch.float16), 'lora_B': torch.zeros(4, 8, dtype=torch.bfloat16),
                  'meta': {'life_energy': 1.2, 'alive': True, 'parent': None, 'shape': (4, 8), 'big': 2**40, 'neg': -3,
                           'name': 'Manchester_United \U0001F19A', 'tags': {'a', 'b'}, 'blob': b'\x00\x01'}})

small = {k: v for k, v in value.items() if not k.startswith(('list', 'dict', 'odict1001', 'many'))}
for p in (0, 2, 4):
    add('small_p%d' % p, pickle.dumps(small, protocol=p), small)

big = [{'name': 'layer.%d.weight' % i, 'shape': (i, i + 1), 'scale': i * 0.5, 'flag': i % 2 == 0, 'id': i * 1000003} for i in range(12000)]
add('big_p2', pickle.dumps(big, protocol=2))
print(json.dumps({'torch': have_torch, 'cases': cases}))
`;

/** Loads each pickle named on stdin (JSON list of [path, expectedRender|null]) and reports mismatches. */
const LOADER = String.raw`
import pickle, sys, json, struct, collections
class Ex:
    def __new__(cls, *args, **kwargs):
        o = object.__new__(cls); o.args = args; o.kwargs = kwargs; return o
sys.modules['__main__'].Ex = Ex
${pyRender("    if isinstance(o, Ex): return 'Ex(' + render(o.args) + ',' + render(o.kwargs) + ')'")}
bad = []
for fn, expected in json.load(sys.stdin):
    with open(fn, 'rb') as f: got = render(pickle.load(f))
    if got != expected: bad.append([fn, got, expected])
print(json.dumps(bad))
`;

interface Case {
  name: string;
  file: string;
  render: string | null;
}

function hasPython(): boolean {
  return spawnSync(PY, ['-c', 'import pickle'], { stdio: 'ignore' }).status === 0;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const utf16hex = (s: string) => Buffer.from(s, 'utf16le').toString('hex');
function floatHex(v: number): string {
  const b = Buffer.alloc(8);
  b.writeDoubleBE(v);
  return b.toString('hex');
}

/** The same rendering as the Python generator's, with protocol-2 spellings of bytes/sets normalised. */
function render(n: PyNode): string {
  switch (n.kind) {
    case 'none':
      return 'None';
    case 'bool':
      return n.value ? 'True' : 'False';
    case 'int':
      return `int:${n.value}`;
    case 'float':
      return `float:${floatHex(n.value)}`;
    case 'str':
      return `str:${utf16hex(n.value)}`;
    case 'bytes':
      return (n.bytearray ? 'bytearray:' : 'bytes:') + hex(n.value);
    case 'list':
      return `[${n.items.map(render).join(',')}]`;
    case 'tuple':
      return `(${n.items.map(render).join(',')})`;
    case 'dict':
      return `{${n.entries.map(([k, v]) => `${render(k)}:${render(v)}`).join(',')}}`;
    case 'set':
      return `${(n.frozen ? 'frozenset{' : 'set{') + n.items.map(render).sort().join(',')}}`;
    case 'object':
      return renderObject(n);
    default:
      throw new Error(`cannot render ${n.kind}`);
  }
}

function renderObject(n: N.PyObject): string {
  const c = n.callable;
  if (c.kind !== 'global') throw new Error('cannot render object with non-global callable');
  const name = `${c.module.replace('__builtin__', 'builtins')}.${c.name}`;
  const args = n.args.kind === 'tuple' ? n.args.items : [];
  const bytesOf = (a: PyNode[]): Uint8Array => {
    if (a.length === 0) return new Uint8Array(0);
    if (a[0].kind === 'str') return Buffer.from(a[0].value, 'latin1');
    const r = render(a[0]);
    return Buffer.from(r.slice(r.indexOf(':') + 1), 'hex');
  };
  switch (name) {
    case '_codecs.encode':
      return `bytes:${hex(bytesOf(args))}`;
    case 'builtins.bytes':
      return `bytes:${hex(bytesOf(args))}`;
    case 'builtins.bytearray':
      return `bytearray:${hex(bytesOf(args))}`;
    case 'builtins.set':
    case 'builtins.frozenset': {
      const items = args.length ? (args[0] as N.PyList).items : [];
      return `${c.name}{${items.map(render).sort().join(',')}}`;
    }
    case 'collections.OrderedDict': {
      const entries = [...(n.setitems ?? [])];
      // INST/OBJ spell the call differently; only reduce with no args is an empty OrderedDict.
      return `odict{${entries.map(([k, v]) => `${render(k)}:${render(v)}`).join(',')}}`;
    }
    default:
      throw new Error(`cannot render ${name}`);
  }
}

function expectFormatError(fn: () => unknown, code: FormatErrorCode | FormatErrorCode[], msg?: RegExp): FormatError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(
    caught instanceof FormatError,
    `expected FormatError, got ${caught instanceof Error ? caught.stack : String(caught)}`,
  );
  const codes = Array.isArray(code) ? code : [code];
  assert.ok(codes.includes(caught.code), `expected ${codes.join('|')}, got ${caught.code}: ${caught.message}`);
  assert.match(caught.message, /offset \d+/);
  if (msg) assert.match(caught.message, msg);
  return caught;
}

/** Hex equality with a short report around the first difference (full dumps are unreadable). */
function assertSameHex(actual: string, expected: string, label: string): void {
  if (actual === expected) return;
  let i = 0;
  while (i < actual.length && actual[i] === expected[i]) i++;
  const at = i >> 1;
  assert.fail(
    `${label}: bytes differ at offset ${at} (lengths ${actual.length / 2} vs ${expected.length / 2}):\n` +
      `  actual   …${actual.slice(Math.max(0, i - 40), i + 40)}\n  expected …${expected.slice(Math.max(0, i - 40), i + 40)}`,
  );
}

const bytes = (...parts: Array<string | number[] | Uint8Array>): Uint8Array =>
  Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p))));

describe('pickle codec', function () {
  this.timeout(120_000);
  let dir = '';
  let cases: Case[] = [];
  let torchAvailable = false;
  const file = (name: string): Uint8Array => {
    const c = cases.find((x) => x.name === name);
    if (!c) throw new Error(`no case ${name}`);
    return fs.readFileSync(c.file);
  };

  before(function () {
    if (!hasPython()) this.skip();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pickle-test-'));
    const out = execFileSync(PY, ['-c', GENERATOR, dir], { encoding: 'utf8', maxBuffer: 64 << 20 });
    const manifest = JSON.parse(out) as { torch: boolean; cases: Case[] };
    cases = manifest.cases;
    torchAvailable = manifest.torch;
  });

  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  describe('decoding what CPython writes', () => {
    it('renders every protocol 0–5 pickle exactly as Python does', () => {
      const checked = cases.filter((c) => c.render !== null);
      assert.ok(checked.length > 50);
      for (const c of checked) {
        const d = decodePickle(fs.readFileSync(c.file));
        assert.equal(render(d.root), c.render, c.name);
      }
    });

    it('reports the protocol and the end offset', () => {
      for (let p = 0; p <= 5; p++) {
        const buf = file(`value_p${p}`);
        const d = decodePickle(buf);
        assert.equal(d.protocol, p, `protocol ${p}`);
        assert.equal(d.end, buf.length);
      }
      const withTrailer = bytes(file('int_3_p2'), 'garbage');
      assert.equal(decodePickle(withTrailer).end, withTrailer.length - 7);
    });

    it('keeps ints exact and signed at every opcode boundary', () => {
      const want = [
        0n,
        1n,
        255n,
        256n,
        65535n,
        65536n,
        2n ** 31n - 1n,
        -(2n ** 31n),
        2n ** 31n,
        -(2n ** 31n) - 1n,
        -1n,
        -128n,
        -256n,
        -(2n ** 40n),
        2n ** 40n,
        2n ** 63n,
        2n ** 64n,
        2n ** 70n,
        -(2n ** 70n),
        2n ** 2000n,
        -(2n ** 2000n),
      ];
      want.forEach((v, i) => {
        for (const p of ['p2', 'p0']) {
          const root = decodePickle(file(`int_${i}_${p}`)).root;
          assert.deepEqual(root, { kind: 'int', value: v, memo: false }, `${v} ${p}`);
        }
      });
    });

    it('keeps float vs int, tuple vs list, -0.0, NaN and lone surrogates', () => {
      const d = decodePickle(file('value_p2'));
      const floats = N.getKey(d.root, 'floats') as N.PyList;
      assert.equal(floats.items[0].kind, 'float');
      assert.ok(Object.is((floats.items[1] as N.PyFloat).value, -0));
      assert.ok(Number.isNaN((floats.items[5] as N.PyFloat).value));
      const tuples = N.getKey(d.root, 'tuples') as N.PyList;
      assert.deepEqual(
        tuples.items.map((t) => t.kind),
        ['tuple', 'tuple', 'tuple', 'tuple', 'tuple'],
      );
      const strs = N.getKey(d.root, 'strs') as N.PyList;
      assert.equal((strs.items[6] as N.PyStr).value, '\ud800 lone \udfff');
      assert.equal((strs.items[9] as N.PyStr).value, '\ufeffbom', 'BOM must not be stripped');
    });

    it('returns the same JS object for a memo GET and marks memoized nodes', () => {
      const d = decodePickle(file('value_p2'));
      const shared = N.getKey(d.root, 'shared') as N.PyList;
      assert.equal(shared.items[0], shared.items[1]);
      assert.equal(shared.items[0].memo, true);
      const many = N.getKey(d.root, 'many_memo') as N.PyList;
      assert.equal(many.items.length, 600);
      assert.equal(many.items[299], many.items[599]); // reached through LONG_BINGET
      assert.ok(hex(file('value_p2')).includes('72'), 'LONG_BINPUT present');
      const ints = N.getKey(d.root, 'ints') as N.PyList;
      assert.equal(ints.items[0].memo, false);
    });

    it('fills OrderedDict (REDUCE) via setitems and protocol-4 sets via ADDITEMS/FROZENSET', () => {
      const d2 = decodePickle(file('value_p2'));
      const od = N.getKey(d2.root, 'odict') as N.PyObject;
      assert.ok(N.isGlobal(od.callable, 'collections', 'OrderedDict'));
      assert.equal(od.setitems?.length, 2);
      assert.equal(N.mappingEntries(N.getKey(d2.root, 'odict1001')!)?.length, 1001);
      const d4 = decodePickle(file('value_p4'));
      assert.deepEqual(
        { ...(N.getKey(d4.root, 'fset') as N.PySet), items: [] },
        { kind: 'set', items: [], frozen: true, memo: true },
      );
      assert.equal((N.getKey(d4.root, 'set') as N.PySet).items.length, 3);
      const ba = (N.getKey(decodePickle(file('value_p5')).root, 'bytes') as N.PyList).items[3];
      assert.deepEqual(ba, { kind: 'bytes', value: new Uint8Array([0x78, 0x79]), bytearray: true, memo: true });
    });

    it('decodes NEWOBJ_EX, INST, OBJ, PERSID and py2 STRING forms as inert records', () => {
      const ex = decodePickle(file('newobj_ex_p4')).root as N.PyObject;
      assert.equal(ex.how, 'newobj_ex');
      assert.ok(N.isGlobal(ex.callable, '__main__', 'Ex'));
      assert.equal(render(ex.args), '(int:1)');
      assert.equal(render(ex.kwargs!), `{str:${utf16hex('k')}:str:${utf16hex('v')}}`);
      const inst = decodePickle(file('py2_inst'));
      const io = inst.root as N.PyObject;
      assert.equal(io.how, 'inst');
      assert.equal(render(io.args), '(int:1,int:2)');
      assert.deepEqual(
        inst.globals.map((g) => `${g.module}.${g.name}`),
        ['collections.OrderedDict'],
      );
      assert.equal(io.memo, true);
      const obj = decodePickle(file('py1_obj')).root as N.PyObject;
      assert.equal(obj.how, 'obj');
      assert.equal(render(obj.args), '(int:1)');
      assert.deepEqual(decodePickle(file('persid_text')).root, {
        kind: 'persid',
        pid: { kind: 'str', value: 'storage_7', memo: false },
        binary: false,
        memo: false,
      });
    });

    it('decodes torch.save data.pkl: state_dict _metadata, parameters, shared storages', function () {
      if (!torchAvailable) this.skip();
      const sd = decodePickle(file('torch_state_dict'));
      const root = sd.root as N.PyObject;
      assert.ok(N.isGlobal(root.callable, 'collections', 'OrderedDict'));
      assert.deepEqual(
        N.mappingEntries(root)!.map(([k]) => (k as N.PyStr).value),
        ['0.weight', '0.bias', '1.weight', '1.bias', '2.weight'],
      );
      assert.ok(N.getKey(root.state!, '_metadata'), 'BUILD state carries _metadata');
      assert.deepEqual(
        sd.globals.map((g) => `${g.module}.${g.name}`),
        ['collections.OrderedDict', 'torch._utils._rebuild_tensor_v2', 'torch.FloatStorage'],
      );

      const par = N.getKey(decodePickle(file('torch_parameter')).root, 'p') as N.PyObject;
      assert.ok(N.isGlobal(par.callable, 'torch._utils', '_rebuild_parameter'));

      const views = decodePickle(file('torch_views')).root;
      const pidOf = (name: string) => {
        const t = N.getKey(views, name) as N.PyObject;
        const persid = (t.args as N.PyTuple).items[0] as N.PyPersId;
        return persid.pid as N.PyTuple;
      };
      const base = pidOf('base');
      for (const v of ['row', 't', 'cols']) {
        const pid = pidOf(v);
        assert.equal(pid.items[2], base.items[2], `${v} shares the storage key node`);
        assert.equal((pid.items[4] as N.PyInt).value, 24n);
      }
      const lora = decodePickle(file('torch_lora')).root;
      assert.equal((N.getKey(N.getKey(lora, 'meta')!, 'big') as N.PyInt).value, 2n ** 40n);
      assert.equal((N.getKey(N.getKey(lora, 'meta')!, 'neg') as N.PyInt).value, -3n);
    });

    it('decodes a ~0.9 MB pickle of 12,000 dicts whole (its speed against CPython is in `npm run bench:format`)', () => {
      const buf = file('big_p2');
      assert.ok(buf.length > 800_000);
      const d = decodePickle(buf);
      const items = (d.root as N.PyList).items;
      assert.equal(items.length, 12000);
      assert.equal(items[11999].kind, 'dict');
    });
  });

  describe('encoding protocol 2', () => {
    it('decode → encode is byte-identical for every protocol-2 pickle Python and torch.save wrote', () => {
      const p2 = cases.filter((c) => /_p2$|^torch_/.test(c.name));
      assert.ok(p2.length >= 25);
      if (torchAvailable) assert.ok(p2.some((c) => c.name === 'torch_state_dict'));
      for (const c of p2) {
        const buf = fs.readFileSync(c.file);
        const again = encodePickle(decodePickle(buf).root);
        assertSameHex(hex(again), hex(buf), c.name);
      }
    });

    it('writes code-built trees exactly as pickle.dumps(protocol=2) does', () => {
      const od = (entries: Array<[PyNode, PyNode]>): N.PyObject => ({
        kind: 'object',
        how: 'reduce',
        callable: N.global('collections', 'OrderedDict'),
        args: N.tuple([]),
        setitems: entries,
      });
      // Python's equal str literals in one code object are one object: mirror that identity.
      const x = N.str('x');
      const a = N.str('a');
      const tree = N.dict([
        [
          a,
          N.list([
            N.int(1),
            N.float(2.5),
            N.none(),
            N.bool(true),
            x,
            N.tuple([N.int(1), N.int(2)]),
            N.tuple([]),
            { kind: 'bytes', value: Buffer.from('ab') },
            { kind: 'bytes', value: new Uint8Array(0) },
            { kind: 'bytes', value: Buffer.from('a') },
            { kind: 'bytes', value: Buffer.from('a') },
            { kind: 'set', items: [N.int(1), N.int(2)], frozen: false },
            { kind: 'bytes', value: Buffer.from('z'), bytearray: true },
          ]),
        ],
        [N.str('k'), x], // the same constant object in the Python source below
        [
          N.str('o'),
          N.list([
            od([]),
            od([[a, N.int(-(2 ** 40))]]),
            od(Array.from({ length: 1001 }, (_, i) => [N.int(i), N.int(i)] as [PyNode, PyNode])),
          ]),
        ],
        [
          N.str('big'),
          N.list([N.int(2n ** 70n), N.int(-(2n ** 31n)), N.int(65536), N.str('Manchester_United 🆚'), N.str('\ud800')]),
        ],
        [N.str('d'), N.dict(Array.from({ length: 2000 }, (_, i) => [N.int(i), N.list([])] as [PyNode, PyNode]))],
      ]);
      const script = String.raw`
import pickle, collections, sys
tree = {'a': [1, 2.5, None, True, 'x', (1, 2), (), b'ab', b'', b'a', b'a', {1, 2}, bytearray(b'z')], 'k': 'x',
        'o': [collections.OrderedDict(), collections.OrderedDict([('a', -2**40)]), collections.OrderedDict((i, i) for i in range(1001))],
        'big': [2**70, -2**31, 65536, 'Manchester_United \U0001F19A', '\ud800'], 'd': {i: [] for i in range(2000)}}
sys.stdout.write(pickle.dumps(tree, protocol=2).hex())`;
      const want = execFileSync(PY, ['-c', script], { encoding: 'utf8', maxBuffer: 64 << 20 });
      assertSameHex(hex(encodePickle(tree)), want, 'code-built tree');
    });

    it('writes long ints like encode_long, LONG4 past 255 bytes', () => {
      const script =
        'import pickle,sys\nfor v in [2**31, -2**31-1, -2**40, 2**63, -2**63, 2**64-1, -128*2**32, 2**2040, -2**2040, 2**8000]: print(pickle.encode_long(v).hex())';
      const lines = execFileSync(PY, ['-c', script], { encoding: 'utf8' }).trim().split('\n');
      const vals = [
        2n ** 31n,
        -(2n ** 31n) - 1n,
        -(2n ** 40n),
        2n ** 63n,
        -(2n ** 63n),
        2n ** 64n - 1n,
        -128n * 2n ** 32n,
        2n ** 2040n,
        -(2n ** 2040n),
        2n ** 8000n,
      ];
      vals.forEach((v, i) => assert.equal(hex(encodeLong(v)), lines[i], String(v)));
      const big = encodePickle(N.int(2n ** 8000n));
      assert.equal(big[2], 0x8b, 'LONG4');
      assert.equal(decodePickle(big, { maxLongBytes: 2000 }).root.kind, 'int');
    });

    it('produces pickles Python loads back to the same values (incl. newobj_ex and decoded py2 forms)', () => {
      const jobs: Array<[string, string]> = [];
      const add = (name: string, root: PyNode, expected: string) => {
        const fn = path.join(dir, `out_${name}.pkl`);
        fs.writeFileSync(fn, encodePickle(root));
        jobs.push([fn, expected]);
      };
      for (const p of [0, 1, 3, 4, 5]) {
        const c = cases.find((x) => x.name === `value_p${p}`)!;
        add(`value_p${p}`, decodePickle(fs.readFileSync(c.file)).root, c.render!);
      }
      for (const name of ['py2_string', 'dict_op', 'long_text', 'int_bools']) {
        const c = cases.find((x) => x.name === name)!;
        add(name, decodePickle(fs.readFileSync(c.file)).root, c.render!);
      }
      add(
        'newobj_ex',
        decodePickle(file('newobj_ex_p4')).root,
        `Ex((int:1),{str:${utf16hex('k')}:str:${utf16hex('v')}})`,
      );
      const out = execFileSync(PY, ['-c', LOADER], { input: JSON.stringify(jobs), encoding: 'utf8' });
      assert.deepEqual(JSON.parse(out), []);
    });

    it('re-emits a shared node as BINGET only when it was memoized', () => {
      const s = N.list([]);
      const viaMemo = encodePickle(N.list([s, s]));
      assert.equal(hex(viaMemo), '80025d7100285d71016801652e'); // pickle.dumps([s, s], 2) with s = []
      const d = decodePickle(viaMemo).root as N.PyList;
      assert.equal(d.items[0], d.items[1]);
      const notMemo: N.PyList = { kind: 'list', items: [], memo: false };
      const twice = decodePickle(encodePickle(N.list([notMemo, notMemo]))).root as N.PyList;
      assert.notEqual(twice.items[0], twice.items[1]);
      assert.throws(
        () => {
          const loop: N.PyList = { kind: 'list', items: [], memo: false };
          loop.items.push(loop);
          encodePickle(loop);
        },
        (e: unknown) => e instanceof FormatError && e.code === 'PICKLE_LIMIT',
      );
    });
  });

  describe('hostile input', () => {
    it('every truncation of a real pickle is PICKLE_TRUNCATED', () => {
      const names = ['small_p0', 'small_p4', ...(torchAvailable ? ['torch_state_dict', 'torch_lora'] : [])];
      for (const name of names) {
        const buf = file(name);
        const limit = Math.min(buf.length, 6000);
        for (let n = 0; n < limit; n++) {
          expectFormatError(() => decodePickle(buf.subarray(0, n)), 'PICKLE_TRUNCATED');
        }
      }
    });

    it('survives thousands of random byte flips with FormatError or a value, fast', () => {
      const rand = prng(0x5eed);
      const sources = [
        'small_p2',
        'small_p0',
        'small_p4',
        ...(torchAvailable ? ['torch_views', 'torch_state_dict'] : []),
      ].map(file);
      let errors = 0;
      let worst = 0;
      for (let i = 0; i < 3000; i++) {
        const src = sources[i % sources.length];
        const buf = Buffer.from(src);
        const flips = 1 + Math.floor(rand() * 3);
        for (let f = 0; f < flips; f++) buf[Math.floor(rand() * buf.length)] = Math.floor(rand() * 256);
        const t0 = process.hrtime.bigint();
        try {
          decodePickle(buf);
        } catch (e) {
          if (!(e instanceof FormatError))
            throw new Error(`iteration ${i}: ${e instanceof Error ? e.stack : String(e)}`);
          errors++;
        }
        worst = Math.max(worst, Number(process.hrtime.bigint() - t0) / 1e6);
      }
      assert.ok(errors > 100, `only ${errors} flips were rejected`);
      assert.ok(worst < 500, `slowest decode ${worst.toFixed(1)} ms`);
    });

    it('rejects deep nesting built with a constant stack', () => {
      // l = []; repeat: m = [l]; l = m  (EMPTY_LIST BINPUT 1 BINGET 0 APPEND BINPUT 0 POP)
      const loop = Array.from({ length: 1000 }, () => bytes(']q\x01h\x00aq\x000')).reduce((a, b) => bytes(a, b));
      expectFormatError(
        () => decodePickle(bytes('\x80\x02]q\x000', loop, 'h\x00.')),
        'PICKLE_LIMIT',
        /deeper than 500/,
      );
      const tuples = bytes('\x80\x02)', '\x85'.repeat(10_000), '.');
      expectFormatError(() => decodePickle(tuples), 'PICKLE_LIMIT', /deeper/);
      assert.equal(decodePickle(tuples, { maxDepth: 20_000 }).root.kind, 'tuple');
      assert.equal(decodePickle(bytes('\x80\x02)', '\x85'.repeat(499), '.')).root.kind, 'tuple');
    });

    it('rejects a billion-laughs memo bomb quickly', () => {
      let body = bytes('\x80\x02K\x01q\x000');
      for (let i = 0; i < 60; i++) body = bytes(body, [0x68, i, 0x68, i, 0x86, 0x71, i + 1, 0x30]);
      const t0 = Date.now();
      expectFormatError(() => decodePickle(bytes(body, [0x68, 60], '.')), 'PICKLE_LIMIT', /expanded/);
      assert.ok(Date.now() - t0 < 200);
      // A small fan-out of the same shape is fine.
      let ok = bytes('\x80\x02K\x01q\x000');
      for (let i = 0; i < 10; i++) ok = bytes(ok, [0x68, i, 0x68, i, 0x86, 0x71, i + 1, 0x30]);
      assert.equal(decodePickle(bytes(ok, [0x68, 10], '.')).root.kind, 'tuple');
    });

    it('rejects huge declared lengths before allocating', () => {
      expectFormatError(() => decodePickle(bytes('\x80\x02X\xff\xff\xff\xffabc.')), 'PICKLE_TRUNCATED');
      expectFormatError(
        () => decodePickle(bytes('\x80\x04\x8d', [0, 0, 0, 0, 0, 0, 0, 0x40], 'abc.')),
        'PICKLE_TRUNCATED',
      );
      expectFormatError(
        () => decodePickle(bytes('\x80\x05\x96', [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], '.')),
        'PICKLE_TRUNCATED',
      );
      expectFormatError(
        () => decodePickle(bytes('\x80\x04\x95', [0, 0, 0, 0, 0, 0, 0x10, 0], '.')),
        'PICKLE_TRUNCATED',
      );
      expectFormatError(() => decodePickle(bytes('\x80\x02\x8b\xff\xff\xff\x7f\x01.')), 'PICKLE_TRUNCATED');
      expectFormatError(
        () => decodePickle(bytes('\x80\x02\x8b\xd0\x07\x00\x00', new Uint8Array(2000), '.')),
        'PICKLE_LIMIT',
        /integer of 2000 bytes/,
      );
      expectFormatError(() => decodePickle(bytes('\x80\x02\x8b\xff\xff\xff\xff.')), 'PICKLE_BAD_OPCODE', /negative/);
      expectFormatError(
        () => decodePickle(bytes('\x80\x02X\x14\x00\x00\x00', 'x'.repeat(20), '.'), { maxStringBytes: 10 }),
        'PICKLE_LIMIT',
      );
      expectFormatError(() => decodePickle(bytes('\x80\x02(((.'), { maxMarks: 2 }), 'PICKLE_LIMIT');
      expectFormatError(() => decodePickle(bytes('\x80\x02NNNN.'), { maxStack: 3 }), 'PICKLE_LIMIT');
      expectFormatError(() => decodePickle(bytes('\x80\x02Nq\x00q\x01q\x02.'), { maxMemo: 2 }), 'PICKLE_LIMIT');
      expectFormatError(() => decodePickle(bytes('\x80\x02NNNN.'), { maxNodes: 3 }), 'PICKLE_LIMIT');
    });

    it('rejects cycles', () => {
      expectFormatError(() => decodePickle(bytes('\x80\x02]q\x00h\x00a.')), 'PICKLE_LIMIT', /cyclic/);
      expectFormatError(() => decodePickle(bytes('\x80\x02]2a.')), 'PICKLE_LIMIT', /cyclic/); // DUP, no memo
      assert.equal(render(decodePickle(bytes('\x80\x02]2\x86.')).root), '([],[])'); // DUP shared, not cyclic
      expectFormatError(
        () => decodePickle(bytes('\x80\x02cbuiltins\nobject\n)Rq\x00h\x00b.')),
        'PICKLE_LIMIT',
        /cyclic/,
      );
      expectFormatError(() => decodePickle(bytes('\x80\x02}q\x00(K\x01]h\x00ae.')), 'PICKLE_STACK'); // APPENDS onto dict
      expectFormatError(() => decodePickle(bytes('\x80\x02}q\x00K\x01]h\x00\x85as.')), 'PICKLE_LIMIT', /cyclic/);
    });

    it('gives typed errors for bad opcodes, stack misuse, memo misses and missing STOP', () => {
      const e = expectFormatError(() => decodePickle(bytes('\x80\x02\xff.')), 'PICKLE_BAD_OPCODE', /0xff/);
      assert.match(e.message, /offset 2\b/);
      expectFormatError(() => decodePickle(bytes('\x80\x06.')), 'PICKLE_BAD_OPCODE', /protocol 6/);
      expectFormatError(() => decodePickle(bytes('\x80\x02\x82\x01.')), 'PICKLE_BAD_OPCODE', /extension/);
      expectFormatError(() => decodePickle(bytes('\x80\x05\x97.')), 'PICKLE_BAD_OPCODE', /out-of-band/);
      expectFormatError(() => decodePickle(bytes('\x80\x02a.')), 'PICKLE_STACK');
      expectFormatError(() => decodePickle(bytes('\x80\x02]e.')), 'PICKLE_STACK', /MARK/);
      expectFormatError(() => decodePickle(bytes('\x80\x02]K\x01K\x02s.')), 'PICKLE_STACK', /list/);
      expectFormatError(() => decodePickle(bytes('\x80\x02]}b.')), 'PICKLE_STACK', /BUILD on a list/);
      expectFormatError(() => decodePickle(bytes('\x80\x02](K\x01K\x02K\x03u.')), 'PICKLE_STACK');
      expectFormatError(() => decodePickle(bytes('\x80\x02](a.')), 'PICKLE_STACK', /underflow/); // APPEND cannot reach below a MARK
      expectFormatError(() => decodePickle(bytes('\x80\x02K\x01K\x02\x93.')), 'PICKLE_STACK', /STACK_GLOBAL/);
      expectFormatError(() => decodePickle(bytes('\x80\x02h\x05.')), 'PICKLE_MEMO', /memo key 5/);
      expectFormatError(() => decodePickle(bytes('\x80\x02K\x01')), 'PICKLE_TRUNCATED', /without STOP/);
      expectFormatError(() => decodePickle(new Uint8Array(0)), 'PICKLE_TRUNCATED');
      expectFormatError(() => decodePickle(bytes('X\x02\x00\x00\x00\xff\xfe.')), 'PICKLE_BAD_OPCODE', /UTF-8/);
      expectFormatError(() => decodePickle(bytes('Iabc\n.')), 'PICKLE_BAD_OPCODE', /integer/);
      expectFormatError(() => decodePickle(bytes('Sabc\n.')), 'PICKLE_BAD_OPCODE', /quoted/);
      // POP on an empty frame pops the MARK, as CPython does.
      assert.equal(render(decodePickle(bytes('\x80\x02K\x07(0.')).root), 'int:7');
    });

    it('never executes anything: GLOBAL posix system + REDUCE is an inert record', () => {
      const marker = path.join(dir, 'pwned');
      const pkl = bytes(`cposix\nsystem\n(S'touch ${marker}'\ntR.`);
      const d = decodePickle(pkl);
      const obj = d.root as N.PyObject;
      assert.equal(obj.kind, 'object');
      assert.equal(obj.how, 'reduce');
      assert.ok(N.isGlobal(obj.callable, 'posix', 'system'));
      assert.equal(((obj.args as N.PyTuple).items[0] as N.PyStr).value, `touch ${marker}`);
      assert.deepEqual(d.globals, [obj.callable]);
      encodePickle(d.root);
      assert.equal(fs.existsSync(marker), false);
      // Python would run it: prove the fixture is the real thing.
      execFileSync(PY, ['-c', 'import pickle,sys; pickle.loads(bytes.fromhex(sys.argv[1]))', hex(pkl)]);
      assert.equal(fs.existsSync(marker), true);
    });
  });
});

describe('pickle decoder source', () => {
  it('dispatches every opcode of opcodes.ts once, each case naming its opcode as OP does', () => {
    // The switch keeps number literals (a jump table); the names in its comments must not drift from OP.
    const src = fs.readFileSync(path.join(__dirname, '../../server/src/formats/pickle/decoder.ts'), 'utf8');
    const cases = [...src.matchAll(/case (0x[0-9a-f]{2}):(?: \{)?\s*\/\/ (\w+)/g)].map((m) => [Number(m[1]), m[2]]);
    const named = new Map(cases.map(([code, name]) => [name as string, code as number]));
    assert.equal(named.size, cases.length, 'an opcode name appears on two cases');
    assert.deepEqual(
      [...named].sort((a, b) => a[1] - b[1]),
      Object.entries(OP).sort((a, b) => a[1] - b[1]),
    );
  });
});
