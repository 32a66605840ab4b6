"""Loads checkpoints with real torch.load and prints, per file, the typed form of the object and
every tensor (path, dtype, shape, sha256 of its C-order bytes) as one JSON document on stdout.
Used by the interop suite to check what our writer produced. Only ever given files we wrote."""
import json
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in test/python
import generate_fixtures as g  # noqa: E402  (a sibling; re-execs with PYTHONHASHSEED=0 when unset)
import torch  # noqa: E402

out = {}
for path in sys.argv[1:]:
    try:
        obj = torch.load(path)
        meta, tensors = g.describe_tensors(obj)
        out[path] = {"meta": meta, "tensors": [{k: t[k] for k in ("path", "dtype", "shape", "sha256", "requires_grad", "parameter")} for t in tensors]}
    except Exception as e:  # report, let the test decide
        out[path] = {"error": f"{type(e).__name__}: {e}"}
json.dump(out, sys.stdout)
