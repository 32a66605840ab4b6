/**
 * Pickle opcodes of protocols 0–5, as listed by CPython's `pickletools.opcodes`.
 * The decoder switches on the raw byte values (so V8 can build a jump table) and uses these
 * tables only for names in error messages and for protocol inference.
 */
export const OP = {
  MARK: 0x28,
  STOP: 0x2e,
  POP: 0x30,
  POP_MARK: 0x31,
  DUP: 0x32,
  FLOAT: 0x46,
  BINFLOAT: 0x47,
  INT: 0x49,
  BININT: 0x4a,
  BININT1: 0x4b,
  BININT2: 0x4d,
  LONG: 0x4c,
  LONG1: 0x8a,
  LONG4: 0x8b,
  STRING: 0x53,
  BINSTRING: 0x54,
  SHORT_BINSTRING: 0x55,
  BINBYTES: 0x42,
  SHORT_BINBYTES: 0x43,
  BINBYTES8: 0x8e,
  BYTEARRAY8: 0x96,
  NEXT_BUFFER: 0x97,
  READONLY_BUFFER: 0x98,
  NONE: 0x4e,
  NEWTRUE: 0x88,
  NEWFALSE: 0x89,
  UNICODE: 0x56,
  BINUNICODE: 0x58,
  SHORT_BINUNICODE: 0x8c,
  BINUNICODE8: 0x8d,
  EMPTY_LIST: 0x5d,
  APPEND: 0x61,
  APPENDS: 0x65,
  LIST: 0x6c,
  EMPTY_TUPLE: 0x29,
  TUPLE: 0x74,
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  TUPLE3: 0x87,
  EMPTY_DICT: 0x7d,
  DICT: 0x64,
  SETITEM: 0x73,
  SETITEMS: 0x75,
  EMPTY_SET: 0x8f,
  ADDITEMS: 0x90,
  FROZENSET: 0x91,
  GET: 0x67,
  BINGET: 0x68,
  LONG_BINGET: 0x6a,
  PUT: 0x70,
  BINPUT: 0x71,
  LONG_BINPUT: 0x72,
  MEMOIZE: 0x94,
  EXT1: 0x82,
  EXT2: 0x83,
  EXT4: 0x84,
  GLOBAL: 0x63,
  STACK_GLOBAL: 0x93,
  REDUCE: 0x52,
  BUILD: 0x62,
  INST: 0x69,
  OBJ: 0x6f,
  NEWOBJ: 0x81,
  NEWOBJ_EX: 0x92,
  PROTO: 0x80,
  FRAME: 0x95,
  PERSID: 0x50,
  BINPERSID: 0x51,
} as const;

export type OpName = keyof typeof OP;

/** Lowest protocol that has each opcode (pickletools' `proto` column). */
const PROTO_OF: Record<OpName, number> = {
  MARK: 0,
  STOP: 0,
  POP: 0,
  POP_MARK: 1,
  DUP: 0,
  FLOAT: 0,
  BINFLOAT: 1,
  INT: 0,
  BININT: 1,
  BININT1: 1,
  BININT2: 1,
  LONG: 0,
  LONG1: 2,
  LONG4: 2,
  STRING: 0,
  BINSTRING: 1,
  SHORT_BINSTRING: 1,
  BINBYTES: 3,
  SHORT_BINBYTES: 3,
  BINBYTES8: 4,
  BYTEARRAY8: 5,
  NEXT_BUFFER: 5,
  READONLY_BUFFER: 5,
  NONE: 0,
  NEWTRUE: 2,
  NEWFALSE: 2,
  UNICODE: 0,
  BINUNICODE: 1,
  SHORT_BINUNICODE: 4,
  BINUNICODE8: 4,
  EMPTY_LIST: 1,
  APPEND: 0,
  APPENDS: 1,
  LIST: 0,
  EMPTY_TUPLE: 1,
  TUPLE: 0,
  TUPLE1: 2,
  TUPLE2: 2,
  TUPLE3: 2,
  EMPTY_DICT: 1,
  DICT: 0,
  SETITEM: 0,
  SETITEMS: 1,
  EMPTY_SET: 4,
  ADDITEMS: 4,
  FROZENSET: 4,
  GET: 0,
  BINGET: 1,
  LONG_BINGET: 1,
  PUT: 0,
  BINPUT: 1,
  LONG_BINPUT: 1,
  MEMOIZE: 4,
  EXT1: 2,
  EXT2: 2,
  EXT4: 2,
  GLOBAL: 0,
  STACK_GLOBAL: 4,
  REDUCE: 0,
  BUILD: 0,
  INST: 0,
  OBJ: 1,
  NEWOBJ: 2,
  NEWOBJ_EX: 4,
  PROTO: 2,
  FRAME: 4,
  PERSID: 0,
  BINPERSID: 1,
};

/** Opcode name by byte value; undefined for bytes that are not opcodes. */
export const OPCODE_NAMES: ReadonlyArray<OpName | undefined> = (() => {
  const names: Array<OpName | undefined> = new Array(256).fill(undefined);
  for (const [name, code] of Object.entries(OP) as Array<[OpName, number]>) names[code] = name;
  return names;
})();

/** Protocol that introduced each opcode by byte value; 0 for non-opcodes (they are rejected anyway). */
export const OPCODE_PROTOCOL: Uint8Array = (() => {
  const protos = new Uint8Array(256);
  for (const [name, code] of Object.entries(OP) as Array<[OpName, number]>) protos[code] = PROTO_OF[name];
  return protos;
})();

/** Highest protocol this codec understands (CPython's pickle.HIGHEST_PROTOCOL in 3.8+). */
export const HIGHEST_PROTOCOL = 5;

/** Items per APPENDS/SETITEMS batch, as CPython's pickler writes them. */
export const BATCH_SIZE = 1000;

/** Describe a byte for error messages: `0x61 (APPEND)` or `0xff (not an opcode)`. */
export function describeOpcode(byte: number): string {
  const hex = `0x${byte.toString(16).padStart(2, '0')}`;
  const name = OPCODE_NAMES[byte];
  return name ? `${hex} (${name})` : `${hex} (not an opcode)`;
}
