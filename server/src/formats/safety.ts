/**
 * Which GLOBALs a pickle may name and still be safe to `torch.load`. torch 1.13 imports and calls
 * whatever a pickle names (its `weights_only` mode cannot even read these files), so we judge the
 * file ourselves, in the spirit of `weights_only=True`: an allowlist of globals that only build data.
 * Anything else is a finding: importing a module can run code, and calling anything else can do anything.
 */
import type { PyGlobal } from './pickle/nodes';
import type { PickleScan } from './pickle/safetyScan';

const ALLOWED: Record<string, ReadonlySet<string>> = {
  'torch._utils': new Set([
    '_rebuild_tensor',
    '_rebuild_tensor_v2',
    '_rebuild_tensor_v3',
    '_rebuild_parameter',
    '_rebuild_parameter_with_state',
    '_rebuild_sparse_tensor',
    '_rebuild_qtensor',
    '_rebuild_meta_tensor_no_storage',
    '_rebuild_nested_tensor',
  ]),
  torch: new Set([
    // storage classes (the persistent id names one per tensor)
    'FloatStorage',
    'DoubleStorage',
    'HalfStorage',
    'BFloat16Storage',
    'LongStorage',
    'IntStorage',
    'ShortStorage',
    'CharStorage',
    'ByteStorage',
    'BoolStorage',
    'ComplexFloatStorage',
    'ComplexDoubleStorage',
    'QInt8Storage',
    'QUInt8Storage',
    'QInt32Storage',
    'UntypedStorage',
    'Float8_e4m3fnStorage',
    'Float8_e5m2Storage',
    'UInt16Storage',
    'UInt32Storage',
    'UInt64Storage',
    // dtype, device and layout objects pickle as plain globals
    'float64',
    'float32',
    'float16',
    'bfloat16',
    'int64',
    'int32',
    'int16',
    'int8',
    'uint8',
    'bool',
    'complex64',
    'complex128',
    'Size',
    'device',
    'strided',
    'sparse_coo',
    'per_tensor_affine',
    'per_channel_affine',
  ]),
  // How torch pickles a layout object (a sparse COO tensor's): a lookup of torch's own layouts by
  // name, nothing else; on torch's own weights_only list since 1.13.
  'torch.serialization': new Set(['_get_layout']),
  'torch._tensor': new Set(['_rebuild_from_type_v2']),
  'torch.nn.parameter': new Set(['Parameter']),
  collections: new Set(['OrderedDict', 'defaultdict', 'Counter']),
  __builtin__: new Set(['set', 'frozenset', 'bytes', 'bytearray', 'complex', 'slice', 'object']),
  builtins: new Set(['set', 'frozenset', 'bytes', 'bytearray', 'complex', 'slice', 'object']),
  // protocol 2 writes every `bytes` object as _codecs.encode(latin1_text, 'latin1')
  _codecs: new Set(['encode']),
  // trainers append np.float64 to fitness_history; numpy 1.x and 2.x module names
  'numpy.core.multiarray': new Set(['scalar', '_reconstruct']),
  'numpy._core.multiarray': new Set(['scalar', '_reconstruct']),
  numpy: new Set(['dtype', 'ndarray']),
  datetime: new Set(['datetime', 'date', 'time', 'timedelta', 'timezone']),
  decimal: new Set(['Decimal']),
  uuid: new Set(['UUID']),
  pathlib: new Set(['PosixPath', 'WindowsPath', 'PurePosixPath', 'PureWindowsPath']),
};

/**
 * Modules of data-only globals that torch's own `weights_only=True` (the default from torch 2.6)
 * does not allow unless the user adds them (`torch.serialization.add_safe_globals`): safe to load,
 * but `torch.load(f)` refuses the file. From torch's _weights_only_unpickler.py (docs/safety.md).
 */
const BEYOND_WEIGHTS_ONLY = new Set([
  'numpy',
  'numpy.core.multiarray',
  'numpy._core.multiarray',
  'datetime',
  'decimal',
  'uuid',
  'pathlib',
]);

/**
 * Single names of ours outside torch's default list (it has OrderedDict and Counter, and from
 * builtins set, complex and bytearray; `__builtin__` is how protocol 2 spells builtins).
 */
const BEYOND_WEIGHTS_ONLY_NAMES = new Set(
  ['collections.defaultdict'].concat(
    ...['builtins', '__builtin__'].map((m) => ['frozenset', 'slice', 'bytes', 'object'].map((n) => `${m}.${n}`)),
  ),
);

/** The globals of a safe file that torch 2.6's default `torch.load` refuses (see BEYOND_WEIGHTS_ONLY). */
export function beyondWeightsOnly(globals: readonly PyGlobal[]): string[] {
  const out = new Set<string>();
  for (const g of globals) {
    const name = `${g.module}.${g.name}`;
    if (BEYOND_WEIGHTS_ONLY.has(g.module) || BEYOND_WEIGHTS_ONLY_NAMES.has(name)) out.add(name);
  }
  return [...out];
}

/** The same list as a Map: looked up for every global of every file a scan reads. */
const ALLOWED_BY_MODULE = new Map(Object.entries(ALLOWED));

export function isAllowedGlobal(g: PyGlobal): boolean {
  return ALLOWED_BY_MODULE.get(g.module)?.has(g.name) ?? false;
}

export interface SafetyFinding {
  /** UNSAFE_GLOBAL: a name outside the allowlist, or a call/import the scan cannot name. */
  type: 'UNSAFE_GLOBAL' | 'NAMESPACE_TAMPERING';
  /** A short label: `posix.system`, `BUILD on torch._utils`, `unresolved STACK_GLOBAL at offset 12`. */
  global: string;
  detail: string;
}

const MUTATION_LABEL = /^(BUILD|SETITEMS?|APPENDS?|ADDITEMS) on /;

/** The finding type of a label (entries keep labels only, see loraFile.ts). */
export function findingTypeOf(label: string): SafetyFinding['type'] {
  return MUTATION_LABEL.test(label) ? 'NAMESPACE_TAMPERING' : 'UNSAFE_GLOBAL';
}

/**
 * What a safety scan (pickle/safetyScan.ts) finds: every imported name outside the allowlist, every
 * call or import it cannot name, every mutation of what a global produced; once each, in that order.
 * `where` names the pickle for the detail (`data.pkl`, `pickle 2 of the file`).
 */
export function scanFindings(scan: PickleScan, where = 'the pickle'): SafetyFinding[] {
  const out: SafetyFinding[] = [];
  const seen = new Set<string>();
  const add = (f: SafetyFinding) => {
    if (seen.has(f.global)) return;
    seen.add(f.global);
    out.push(f);
  };
  for (const n of scan.names) {
    if (ALLOWED_BY_MODULE.get(n.module)?.has(n.name)) continue;
    const name = `${n.module}.${n.name}`;
    add({
      type: 'UNSAFE_GLOBAL',
      global: name,
      detail: `torch.load would import and may call ${name} (${n.op} at offset ${n.at} of ${where}); it is not in the list of data-only globals`,
    });
  }
  for (const u of scan.unresolved)
    add({
      type: 'UNSAFE_GLOBAL',
      global: `unresolved ${u.op} at offset ${u.at}`,
      detail: `${u.op} at offset ${u.at} of ${where}: ${u.why}, so what torch.load would import or call cannot be checked against the allowlist`,
    });
  for (const t of scan.tampering)
    add({
      type: 'NAMESPACE_TAMPERING',
      global: `${t.op} on ${t.target}`,
      detail: `${t.op} at offset ${t.at} of ${where} rewrites ${t.target}, an object a GLOBAL imported (a module, class or function), not data an allowlisted constructor built: a later, allowed-looking name could then run anything`,
    });
  return out;
}

/** Every global outside the allowlist, once each, in first-seen order. Empty means safe to load. */
export function safetyFindings(globals: readonly PyGlobal[]): SafetyFinding[] {
  const out: SafetyFinding[] = [];
  const seen = new Set<string>();
  for (const g of globals) {
    if (isAllowedGlobal(g)) continue;
    const name = `${g.module}.${g.name}`;
    if (seen.has(name)) continue;
    seen.add(name);
    out.push({
      type: 'UNSAFE_GLOBAL',
      global: name,
      detail: `torch.load would import and may call ${name}; it is not in the list of data-only globals`,
    });
  }
  return out;
}
