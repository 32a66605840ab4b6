#!/usr/bin/python3
"""Write a LoRA copy and its source with real torch.save, and print torch's own account of how each
tensor of the copy differs from the source (for test/unit/tensorDiff.test.ts).

Usage: /usr/bin/python3 test/python/make_diff_pairs.py OUTDIR  ->  OUTDIR/copy.pt, OUTDIR/source.pt; JSON on stdout

Expected values are computed here, independently of the TypeScript under test: in double precision
(float16/bfloat16/float32 widen exactly), NaN on both sides equal, NaN on one side a differing
element left out of the maximum, integers exactly with Python ints.
"""
import json
import math
import os
import sys

import torch

out = sys.argv[1]
torch.manual_seed(7)
src, cp = {}, {}


def pair(name, a, b):
    src[name] = a
    cp[name] = b


for dt in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
    a = torch.randn(40, 25).to(dt)
    b = a.clone()
    b[0:3] += torch.randn(3, 25).to(dt)
    b[5, 5] = float("nan")          # NaN on one side
    a[6, 6] = float("nan")
    b[6, 6] = float("nan")          # NaN on both sides: equal
    pair("float." + str(dt).replace("torch.", ""), a, b)

a = torch.zeros(8)
b = a.clone()
b[2] = -0.0                          # bytes differ, values equal
pair("signed_zero", a, b)

a = torch.ones(6)
b = a.clone()
b[1] = float("inf")                  # inf against a finite value
pair("inf", a, b)

a = torch.randint(-2**62, 2**62, (50,), dtype=torch.int64)
b = a.clone()
b[3] = -a[3]
b[10] += 12345
pair("int64", a, b)
for dt in (torch.int32, torch.int16, torch.int8, torch.uint8):
    a = torch.randint(0, 100, (7, 9)).to(dt)
    b = a.clone()
    b[1, 2] += 3
    b[4, 4] = 0
    pair(str(dt).replace("torch.", ""), a, b)

a = torch.zeros(30, dtype=torch.bool)
b = a.clone()
b[7] = True
b[8] = True
pair("bool", a, b)

a = torch.randn(5, 4, dtype=torch.complex64)
b = a.clone()
b[2, 1] += 0.5 - 0.25j
pair("complex64", a, b)

# A large-ish tensor (6 MB) the reader must stream in chunks, changed here and there.
a = torch.randn(1_500_000)
b = a.clone()
b[::1000] += 0.25
b[1_234_567] = 7.0
pair("big", a, b)

# A strided view in the copy against a contiguous tensor in the source.
base = torch.randn(30, 20)
a = base.t().contiguous()
a[3, 4] += 2.0
pair("view", a, base.t())

# Structure: a shape change, a dtype change, a tensor only in the source, one only in the copy.
pair("shape", torch.randn(4, 16), torch.randn(4, 8))
x = torch.randn(4, 4)
pair("dtype", x, x.double())
src["only_in_source"] = torch.randn(3)
cp["only_in_copy"] = torch.randn(3)
same = torch.randn(16, 4)
pair("same", same, same.clone())


META = {"id": "lora_diff", "name": "LoRA_Diff"}
torch.save({"lora_params": src, "metadata": META}, os.path.join(out, "source.pt"))
torch.save({"lora_params": cp, "metadata": META}, os.path.join(out, "copy.pt"))


def expect(a, b):
    if a.shape != b.shape:
        return {"kind": "shape"}
    if a.dtype != b.dtype:
        return {"kind": "dtype"}
    if a.is_complex():
        xs, ys = a.reshape(-1).tolist(), b.reshape(-1).tolist()
        diffs = [abs(x - y) for x, y in zip(xs, ys) if x != y]
        return {"kind": "differs" if diffs else "equal", "differing": len(diffs), "max": max(diffs, default=0.0)}
    if a.dtype.is_floating_point:
        x, y = a.double().reshape(-1), b.double().reshape(-1)
        nx, ny = torch.isnan(x), torch.isnan(y)
        one = nx ^ ny
        ne = (x != y) & ~nx & ~ny
        d = (x - y)[ne].abs()
        m = d.max().item() if d.numel() else 0.0
        return {"kind": "differs", "differing": int(ne.sum() + one.sum()), "nan": int(one.sum()),
                "max": "inf" if math.isinf(m) else m}
    xs = [int(v) for v in a.reshape(-1).tolist()]
    ys = [int(v) for v in b.reshape(-1).tolist()]
    diffs = [abs(p - q) for p, q in zip(xs, ys) if p != q]
    return {"kind": "differs", "differing": len(diffs), "max": float(max(diffs, default=0))}


result = {}
for k in cp:
    if k in src:
        result[k] = expect(cp[k], src[k])
    else:
        result[k] = {"kind": "extra"}
for k in src:
    if k not in cp:
        result[k] = {"kind": "missing"}
result["same"] = {"kind": "equal"}  # a clone: the same bytes, so the same digest
json.dump(result, sys.stdout)
