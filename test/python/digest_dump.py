"""An independent implementation of LoRA Sync's tensor digest (DIGEST_ALG
'xxh64-4MiB-leaves+sha256-128'), over the bytes real torch.load gives for each tensor:
the C-order bytes are cut into 4 MiB leaves, each hashed with XXH64 (python3-xxhash), and the
digest is the first 32 hex digits of SHA-256 over the leaf digests (big-endian) and the length (u64 LE).

  digest_dump.py write OUT.pt      write a checkpoint with multi-leaf, view and odd tensors (torch.save)
  digest_dump.py dump FILE...      print {file: [{path, digest}]} as JSON (only given sound files)
"""
import hashlib
import json
import os
import struct
import sys

sys.dont_write_bytecode = True  # no __pycache__ in test/python
import generate_fixtures as g  # noqa: E402  (a sibling; re-execs with PYTHONHASHSEED=0 when unset)
import torch  # noqa: E402
import xxhash  # noqa: E402

LEAF = 4 * 1024 * 1024


def digest(b):
    leaves = [xxhash.xxh64_digest(b[i:i + LEAF]) for i in range(0, max(len(b), 1), LEAF)]
    return hashlib.sha256(b"".join(leaves) + struct.pack("<Q", len(b))).hexdigest()[:32]


def write(out):
    gen = torch.Generator().manual_seed(7)
    big = torch.randn(3_000_000, generator=gen)                # 12 MB: three leaves, the last partial
    exact = torch.randn(2 * LEAF // 4, generator=gen)           # exactly two leaves
    grid = torch.randn(1500, 1100, generator=gen)
    obj = {
        "lora_params": {
            "big": big,
            "exact_leaves": exact,
            "transposed": grid.t(),                             # non-contiguous view
            "sliced": big[123_457:1_300_000],                   # storage offset inside a shared storage
            "every_third": big[::3][:400_000],                  # strided view
            "bf16": torch.randn(257, 33, generator=gen).to(torch.bfloat16),
            "i64": torch.arange(-5, 10_000, dtype=torch.int64),
            "mask": torch.rand(1001, generator=gen) > 0.5,
            "empty": torch.zeros(0, 8),
            "scalar": torch.tensor(3.25, dtype=torch.float64),
        },
        "metadata": {"id": "lora_digest", "score": 0.5},
    }
    torch.save(obj, out)


def dump(files):
    out = {}
    for path in files:
        found = []

        def on_tensor(t, p, is_param):
            found.append({"path": p, "digest": digest(g.tensor_bytes(t))})

        g.TypedWalker(lambda v: isinstance(v, torch.Tensor), lambda v: isinstance(v, torch.nn.Parameter), on_tensor).typed(torch.load(path, weights_only=False))
        out[path] = found
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2])
    else:
        dump(sys.argv[2:])
