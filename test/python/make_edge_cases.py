"""Small seed-layout workspaces of torch files beyond the seed's own, each one folder under OUT:
a source in ⭐_AKTIF_EN_IYILER/ and a stale copy in Team/🎯_WIN_EXPERTS/ (match 45 against 50),
varied the way real files vary (torchEdges.interop.test.ts says what each must do).

usage: make_edge_cases.py OUT
"""
import os
import sys

import numpy as np
import torch

OUT = sys.argv[1]
SRC_DIR = "⭐_AKTIF_EN_IYILER"
COPY_DIR = os.path.join("Team", "🎯_WIN_EXPERTS")


def params(seed):
    g = torch.Generator().manual_seed(seed)
    return {"layers.0.lora_A": torch.randn(4, 8, generator=g), "layers.0.lora_B": torch.randn(8, 4, generator=g)}


def meta(match, extra=None):
    m = {"id": "lora_X", "name": "LoRA_X", "sync_info": {"last_sync_match": match}}
    m.update(extra or {})
    return m


def workspace(name, src_params, copy_params, own=None, copy_meta=None, save=None, copy_name="LoRA_X_abc123.pt"):
    root = os.path.join(OUT, name)
    os.makedirs(os.path.join(root, SRC_DIR))
    os.makedirs(os.path.join(root, COPY_DIR))
    save = save or (lambda obj, path: torch.save(obj, path))
    save({"lora_params": src_params, "metadata": meta(50)}, os.path.join(root, SRC_DIR, "LoRA_X.pt"))
    cm = copy_meta if copy_meta is not None else meta(45, dict({"team": "Team", "score": 87}, **(own or {})))
    save({"lora_params": copy_params, "metadata": cm}, os.path.join(root, COPY_DIR, copy_name))
    return root


def quantized(p):
    p = dict(p)
    p["layers.0.lora_A"] = torch.quantize_per_tensor(p["layers.0.lora_A"], 0.1, 0, torch.qint8)
    return p


def sparse(p):
    p = dict(p)
    p["layers.0.lora_A"] = p["layers.0.lora_A"].to_sparse()
    return p


# A quantized tensor: its storage is an argument of _rebuild_qtensor, not of a plain tensor.
workspace("quantized", quantized(params(1)), quantized(params(2)))

# The same in the legacy format, where a storage's length needs its element size.
workspace(
    "quantized_legacy",
    quantized(params(1)),
    quantized(params(2)),
    save=lambda obj, path: torch.save(obj, path, _use_new_zipfile_serialization=False),
)

# The copy's own keys hold tensors (one a view into a bigger storage); the source has a third
# storage, so the copy's storage keys clash with the source's.
src = params(1)
src["extra"] = torch.ones(3)
workspace("own_tensor", src, params(2), own={"score": torch.tensor(0.87), "team": torch.arange(6)[2:5]})

# The legacy format written with pickle protocols 4 and 5 (a FRAME before the magic number).
for proto in (4, 5):
    workspace(
        f"legacy_p{proto}",
        params(1),
        params(2),
        save=lambda obj, path, proto=proto: torch.save(
            obj, path, _use_new_zipfile_serialization=False, pickle_protocol=proto
        ),
    )

# A copy whose name takes 240 bytes: no room for a temporary name that adds ~40.
workspace("long_name", params(1), params(2), copy_name="LoRA_X_" + "ş" * 110 + "_abc123.pt")

# A sparse COO tensor: torch pickles its layout as torch.serialization._get_layout("torch.sparse_coo").
workspace("sparse", sparse(params(1)), sparse(params(2)))

# numpy scalars in a copy's own key: safe, but torch 2.6's default torch.load refuses them.
workspace("numpy", params(1), params(2), own={"score": np.float64(0.87)})

# A copy-only key that is not a copy key: the sync drops it, keeps a backup and says so.
workspace("copy_only_key", params(1), params(2), own={"notes": "kept by hand"})

# A copy no record or match number says was ever synced: DIVERGED, worded as such.
workspace("never_synced", params(1), params(2), copy_meta={"id": "lora_X", "name": "LoRA_X", "team": "Team"})

# A source that cannot be read: its copies are orphans that say why.
root = workspace("corrupt_source", params(1), params(2))
with open(os.path.join(root, SRC_DIR, "LoRA_X.pt"), "r+b") as f:
    f.truncate(os.path.getsize(f.name) - 30)

# A lora-sync.json with a UTF-8 byte-order mark, naming the source folder.
root = workspace("bom_config", params(1), params(2))
with open(os.path.join(root, "lora-sync.json"), "w", encoding="utf-8-sig") as f:
    f.write('{"sourceFolders": ["⭐_AKTIF_EN_IYILER/"]}\n')

# The state folder .lora-sync is a plain file.
root = workspace("state_file", params(1), params(2))
with open(os.path.join(root, ".lora-sync"), "w") as f:
    f.write("not a folder\n")

# For the test: the protocol each legacy file was written with (its second byte).
for proto in (4, 5):
    with open(os.path.join(OUT, f"legacy_p{proto}", SRC_DIR, "LoRA_X.pt"), "rb") as f:
        head = f.read(2)
    assert head == bytes([0x80, proto]), head
print("ok")
