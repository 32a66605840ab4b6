"""Writes a workspace of LoRA checkpoints whose pickles would run code on torch.load, with real
torch.save (test/faults/hostile.faults.test.ts). Usage: make_hostile.py WORKSPACE MARKER

Each payload, if ever executed, creates the file MARKER.<kind>: the suite checks that nothing the
engine does creates one, then loads every file with torch.load itself to prove that each payload is
live (that is the only place they run, in a scratch folder).

- LoRAs whose *source* carries a payload (in metadata), each with a clean STALE copy;
- one clean LoRA whose *copies* carry the payloads (in general metadata, and in a per-copy key),
  and one clean STALE copy that a sync must still write.
"""
import builtins
import json
import os
import subprocess
import sys

import torch
import torch.utils.collect_env as collect_env

ws, marker = sys.argv[1], sys.argv[2]


class System:  # pickled as posix.system
    def __reduce__(self):
        return (os.system, ("touch '%s.posix_system'" % marker,))


class Eval:  # builtins.eval (written __builtin__.eval by protocol 2)
    def __reduce__(self):
        return (builtins.eval, ("open(%r, 'w').close()" % (marker + ".eval"),))


class Subprocess:
    def __reduce__(self):
        return (subprocess.check_call, (["touch", marker + ".subprocess"],))


class CollectEnvRun:  # torch.utils.collect_env.run runs a shell command
    def __reduce__(self):
        return (collect_env.run, ("touch '%s.collect_env'" % marker,))


class ImportOs:
    def __reduce__(self):
        return (builtins.__import__, ("os",))


class GetSystem:  # getattr(__import__('os'), 'system'): a global reached through getattr
    def __call__(self, *a):
        pass

    def __reduce__(self):
        return (builtins.getattr, (ImportOs(), "system"))


class ViaGetattr:
    def __reduce__(self):
        return (GetSystem(), ("touch '%s.getattr'" % marker,))


PAYLOADS = {"posix_system": System, "eval": Eval, "subprocess": Subprocess, "collect_env": CollectEnvRun, "getattr": ViaGetattr}


def lora(lid, name, seed, match, extra=None):
    g = torch.Generator().manual_seed(seed)
    params = {"layers.%d.lora_%s" % (l, ab): torch.randn(4, 16, generator=g) if ab == "A" else torch.randn(16, 4, generator=g)
              for l in range(2) for ab in "AB"}
    meta = {"id": lid, "name": name, "generation": 3, "fitness_history": [0.1, 0.2],
            "sync_info": {"last_sync_match": match, "last_sync_time": "2025-12-04T10:00:00", "sync_reason": "LEARNING_UPDATE"}}
    meta.update(extra or {})
    return {"lora_params": params, "metadata": meta}


def copy_keys(team):
    return {"team": team, "specialization_key": "WIN_EXPERT", "score": 0.5, "match_count": 40, "exported_at": "2025-12-01T09:00:00"}


src_dir = os.path.join(ws, "\u2b50_AKTIF_EN_IYILER")
copy_dir = os.path.join(ws, "Galatasaray", "\U0001f3af_WIN_EXPERTS")
os.makedirs(src_dir, exist_ok=True)
os.makedirs(copy_dir, exist_ok=True)
made = {"unsafe_sources": {}, "clean_copies_of_unsafe": [], "unsafe_copies": {}, "clean_stale_copy": None}

for i, (kind, cls) in enumerate(PAYLOADS.items()):
    name = "LoRA_Evil_%s" % kind
    src = os.path.join(src_dir, name + ".pt")
    torch.save(lora("lora_evil_" + kind, name, 100 + i, 50, {"hook": cls()}), src)
    cp = os.path.join(copy_dir, "%s_aa%04d.pt" % (name, i))
    torch.save(lora("lora_evil_" + kind, name, 200 + i, 45, copy_keys("Galatasaray")), cp)
    made["unsafe_sources"][os.path.relpath(src, ws)] = kind
    made["clean_copies_of_unsafe"].append(os.path.relpath(cp, ws))

torch.save(lora("lora_good", "LoRA_Good", 1, 50), os.path.join(src_dir, "LoRA_Good.pt"))
for i, (kind, cls) in enumerate(PAYLOADS.items()):
    # One payload sits in a per-copy key, which a sync would carry over to the new file.
    keys = copy_keys(cls()) if kind == "posix_system" else dict(copy_keys("Galatasaray"), hook=cls())
    cp = os.path.join(copy_dir, "LoRA_Good_bb%04d.pt" % i)
    torch.save(lora("lora_good", "LoRA_Good", 300 + i, 45, keys), cp)
    made["unsafe_copies"][os.path.relpath(cp, ws)] = kind
clean = os.path.join(copy_dir, "LoRA_Good_cc0000.pt")
torch.save(lora("lora_good", "LoRA_Good", 400, 45, copy_keys("Galatasaray")), clean)
made["clean_stale_copy"] = os.path.relpath(clean, ws)
print(json.dumps(made))
