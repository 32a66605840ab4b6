/**
 * Element types, spelled as torch spells them without `torch.` (what users see in `print(t.dtype)`),
 * with the legacy storage class each one pickles as and the safetensors code.
 */
export type TorchDtype =
  | 'float64'
  | 'float32'
  | 'float16'
  | 'bfloat16'
  | 'int64'
  | 'int32'
  | 'int16'
  | 'int8'
  | 'uint8'
  | 'bool'
  | 'complex64'
  | 'complex128'
  | 'float8_e4m3fn'
  | 'float8_e5m2'
  | 'uint16'
  | 'uint32'
  | 'uint64'
  | 'qint8'
  | 'quint8'
  | 'qint32';

/** The safetensors codes of the dtypes the format has. */
export type SafetensorsDtype =
  | 'F64'
  | 'F32'
  | 'F16'
  | 'BF16'
  | 'I64'
  | 'I32'
  | 'I16'
  | 'I8'
  | 'U8'
  | 'BOOL'
  | 'F8_E4M3'
  | 'F8_E5M2'
  | 'U16'
  | 'U32'
  | 'U64';

interface DtypeInfo {
  itemSize: number;
  storage?: string;
  safetensors?: SafetensorsDtype;
}

const TABLE: Record<TorchDtype, DtypeInfo> = {
  float64: { itemSize: 8, storage: 'DoubleStorage', safetensors: 'F64' },
  float32: { itemSize: 4, storage: 'FloatStorage', safetensors: 'F32' },
  float16: { itemSize: 2, storage: 'HalfStorage', safetensors: 'F16' },
  bfloat16: { itemSize: 2, storage: 'BFloat16Storage', safetensors: 'BF16' },
  int64: { itemSize: 8, storage: 'LongStorage', safetensors: 'I64' },
  int32: { itemSize: 4, storage: 'IntStorage', safetensors: 'I32' },
  int16: { itemSize: 2, storage: 'ShortStorage', safetensors: 'I16' },
  int8: { itemSize: 1, storage: 'CharStorage', safetensors: 'I8' },
  uint8: { itemSize: 1, storage: 'ByteStorage', safetensors: 'U8' },
  bool: { itemSize: 1, storage: 'BoolStorage', safetensors: 'BOOL' },
  complex64: { itemSize: 8, storage: 'ComplexFloatStorage' },
  complex128: { itemSize: 16, storage: 'ComplexDoubleStorage' },
  float8_e4m3fn: { itemSize: 1, storage: 'Float8_e4m3fnStorage', safetensors: 'F8_E4M3' },
  float8_e5m2: { itemSize: 1, storage: 'Float8_e5m2Storage', safetensors: 'F8_E5M2' },
  uint16: { itemSize: 2, storage: 'UInt16Storage', safetensors: 'U16' },
  uint32: { itemSize: 4, storage: 'UInt32Storage', safetensors: 'U32' },
  uint64: { itemSize: 8, storage: 'UInt64Storage', safetensors: 'U64' },
  qint8: { itemSize: 1, storage: 'QInt8Storage' },
  quint8: { itemSize: 1, storage: 'QUInt8Storage' },
  qint32: { itemSize: 4, storage: 'QInt32Storage' },
};

const BY_STORAGE = new Map<string, TorchDtype>();
const BY_SAFETENSORS = new Map<string, TorchDtype>();
for (const [dtype, info] of Object.entries(TABLE) as Array<[TorchDtype, DtypeInfo]>) {
  if (info.storage) BY_STORAGE.set(info.storage, dtype);
  if (info.safetensors) BY_SAFETENSORS.set(info.safetensors, dtype);
}

export function itemSize(dtype: TorchDtype): number {
  return TABLE[dtype].itemSize;
}

/** `FloatStorage` -> `float32`; undefined for classes we do not know (e.g. `UntypedStorage`). */
export function dtypeFromStorageClass(name: string): TorchDtype | undefined {
  return BY_STORAGE.get(name);
}

export function storageClassOf(dtype: TorchDtype): string {
  const s = TABLE[dtype].storage;
  if (!s) throw new Error(`no storage class for ${dtype}`);
  return s;
}

export function dtypeFromSafetensors(code: string): TorchDtype | undefined {
  return BY_SAFETENSORS.get(code);
}

export function isSafetensorsDtype(code: string): code is SafetensorsDtype {
  return BY_SAFETENSORS.has(code);
}

export function safetensorsCodeOf(dtype: TorchDtype): SafetensorsDtype | undefined {
  return TABLE[dtype].safetensors;
}

/** Number of elements of a shape; 1 for a 0-d tensor. Caller guarantees non-negative safe integers. */
export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}
