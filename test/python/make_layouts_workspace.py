#!/usr/bin/python3
"""Write a workspace of real LoRA layouts with every case the engine's identity, version and status rules
meet, and the status each file must get (`expected.json`).

Usage: /usr/bin/python3 test/python/make_layouts_workspace.py [OUTDIR]   (default: test/fixtures/layouts_workspace)

The files are made by make_layouts.py's writers (real torch.save; safetensors from the specification):
a kohya training output designated as source by a `sourceFolders` glob in lora-sync.json (epoch 8, a step
save, the final save; a second run of the same output name; a `save_model_as=pt` run), its copies in
ComfyUI `models/loras` and A1111 `models/Lora` (current, renamed, stale = epoch 8, modified, wrong embedded
hashes, converted without metadata), a PEFT adapter with a Trainer `checkpoint-500/` deployed to prod and
staging in safetensors and `.bin`, a Trainer output_dir with optimizer/scheduler/RNG state, a diffusers
folder, plain state dicts, a full model, and a git-lfs pointer.

Output is deterministic; `SHA256SUMS` lists every file.
"""

import hashlib
import json
import os
import shutil
import sys

if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import make_layouts as L  # noqa: E402
from generate_fixtures import write_sha256sums  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "fixtures", "layouts_workspace")

CONFIG = {"sourceFolders": ["train/**", "peft/**", "hf_out"]}


def generate(root):
    if os.path.exists(root):
        shutil.rmtree(root)
    o = L.Out(root)
    exp = {}

    def expect(rel, status, by=None, version=None, message=None, issues=None, why=None, lora=None):
        e = {"status": status}
        for k, v in (("identified_by", by), ("version", version), ("message", message), ("issue_types", issues),
                     ("why", why), ("lora_id", lora)):
            if v is not None:
                e[k] = v
        exp[rel] = e

    o.text("lora-sync.json", json.dumps(CONFIG, indent=2) + "\n")

    # ---- kohya: one run (epoch 8, step 500, final epoch 12), a second run, a .pt run ---------------------
    k8, k_step, k_final = L.kohya_tensors(8), L.kohya_tensors(10), L.kohya_tensors(12)
    md8 = L.with_hashes(k8, L.kohya_metadata(L.RUN1, "pixel_style", 8, 400))
    md_final = L.with_hashes(k_final, L.kohya_metadata(L.RUN1, "pixel_style", 12, 600))
    run1 = "name:pixel_style@" + L.RUN1["session"]
    run2 = "name:pixel_style@" + L.RUN2["session"]
    o.st("train/kohya/pixel_style-000008.safetensors", k8, md8)
    expect("train/kohya/pixel_style-000008.safetensors", "VERSION", "layout_name", "epoch 8", lora=run1)
    o.st("train/kohya/pixel_style-step00000500.safetensors", k_step,
         L.with_hashes(k_step, L.kohya_metadata(L.RUN1, "pixel_style", 10, 500)))
    expect("train/kohya/pixel_style-step00000500.safetensors", "VERSION", "layout_name", "step 500", lora=run1)
    o.st("train/kohya/pixel_style.safetensors", k_final, md_final)
    expect("train/kohya/pixel_style.safetensors", "SOURCE", "layout_name", "epoch 12", lora=run1)
    k_run2 = L.kohya_tensors(99)
    md_run2 = L.with_hashes(k_run2, L.kohya_metadata(L.RUN2, "pixel_style", 12, 600))
    o.st("train/kohya_run2/pixel_style.safetensors", k_run2, md_run2)
    expect("train/kohya_run2/pixel_style.safetensors", "SOURCE", "layout_name", "epoch 12", lora=run2)
    # save_model_as=pt: no metadata; versions from kohya's names only.
    o.torch("train/kohya_pt/pixel_style-000004.pt", L.kohya_tensors(4))
    expect("train/kohya_pt/pixel_style-000004.pt", "VERSION", "file_name", "epoch 4", lora="name:pixel_style")
    o.torch("train/kohya_pt/pixel_style.pt", L.kohya_tensors(12))
    expect("train/kohya_pt/pixel_style.pt", "SOURCE", "file_name", lora="name:pixel_style")

    # ---- copies in the UIs' folders ----------------------------------------------------------------------
    o.st("ComfyUI/models/loras/pixel_style.safetensors", k_final, md_final)
    expect("ComfyUI/models/loras/pixel_style.safetensors", "IN_SYNC", "layout_name", "epoch 12", lora=run1)
    # Renamed, but kohya's metadata names its LoRA and run.
    o.st("ComfyUI/models/loras/pixel_style_v2.safetensors", k_final, md_final)
    expect("ComfyUI/models/loras/pixel_style_v2.safetensors", "IN_SYNC", "layout_name", lora=run1)
    o.st("ComfyUI/models/loras/pixel_style_run2.safetensors", k_run2, md_run2)
    expect("ComfyUI/models/loras/pixel_style_run2.safetensors", "IN_SYNC", "layout_name", lora=run2)
    # Wrong embedded hashes: in sync (the hash keys are not compared), with warnings.
    o.st("ComfyUI/models/loras/pixel_style_badhash.safetensors", k_final,
         L.with_hashes(k_final, L.kohya_metadata(L.RUN1, "pixel_style", 12, 600), wrong=True))
    expect("ComfyUI/models/loras/pixel_style_badhash.safetensors", "IN_SYNC", "layout_name", lora=run1,
           issues=["EMBEDDED_HASH_MISMATCH"] * 3)
    # Run 2 converted without metadata: only its content says whose it is (drift: the ss_* keys are gone).
    o.st("ComfyUI/models/loras/converted_run2.safetensors", k_run2, None)
    expect("ComfyUI/models/loras/converted_run2.safetensors", "METADATA_DRIFT", "content", lora=run2)
    # Equal to both the safetensors run and the .pt run: no LoRA is guessed.
    o.torch("ComfyUI/models/loras/renamed_by_deploy.pt", L.kohya_tensors(12))
    expect("ComfyUI/models/loras/renamed_by_deploy.pt", "ORPHAN", "file_name", issues=["NO_SOURCE"])
    # kohya names, no metadata, no source anywhere.
    o.st("ComfyUI/models/loras/anime_lines-000003.safetensors", L.kohya_tensors(3), None)
    expect("ComfyUI/models/loras/anime_lines-000003.safetensors", "ORPHAN", "file_name", "epoch 3",
           issues=["NO_SOURCE"])
    # A1111: epoch 8 (stale, with the version message), and an edited copy (diverged).
    o.st("stable-diffusion-webui/models/Lora/pixel_style.safetensors", k8, md8)
    o.text("stable-diffusion-webui/models/Lora/pixel_style.json",
           json.dumps({"description": "user notes", "activation text": "pixel art"}) + "\n")
    expect("stable-diffusion-webui/models/Lora/pixel_style.safetensors", "STALE", "layout_name", "epoch 8",
           message="stale: equal to epoch 8 (pixel_style-000008.safetensors); the source is at epoch 12", lora=run1)
    edited = dict(k_final)
    first = sorted(edited)[0]
    edited[first] = edited[first] * 2
    o.st("stable-diffusion-webui/models/Lora/pixel_style_edit.safetensors", edited, md_final)
    expect("stable-diffusion-webui/models/Lora/pixel_style_edit.safetensors", "DIVERGED", "layout_name", lora=run1)

    # ---- PEFT: source with a Trainer checkpoint inside; deployed copies --------------------------------
    p_final, p500 = L.peft_tensors(1), L.peft_tensors(500)
    cfg = L.adapter_config()
    o.text("peft/pixel_lora/adapter_config.json", cfg)
    o.st("peft/pixel_lora/adapter_model.safetensors", p_final, {"format": "pt"})
    expect("peft/pixel_lora/adapter_model.safetensors", "SOURCE", "layout_name", lora="name:pixel_lora")
    o.text("peft/pixel_lora/checkpoint-500/adapter_config.json", cfg)
    o.st("peft/pixel_lora/checkpoint-500/adapter_model.safetensors", p500, {"format": "pt"})
    expect("peft/pixel_lora/checkpoint-500/adapter_model.safetensors", "VERSION", "layout_name", "checkpoint-500",
           lora="name:pixel_lora")
    for d, fmt, t, status in (("prod", "st", p_final, "IN_SYNC"), ("prod_bin", "bin", p_final, "IN_SYNC"),
                              ("staging", "st", p500, "STALE"), ("staging_bin", "bin", p500, "STALE")):
        folder = "deploy/%s/pixel_lora/" % d
        o.text(folder + "adapter_config.json", cfg)
        rel = folder + ("adapter_model.safetensors" if fmt == "st" else "adapter_model.bin")
        if fmt == "st":
            o.st(rel, t, {"format": "pt"})
        else:
            o.torch(rel, t)   # safe_serialization=False
        msg = ("stale: equal to checkpoint-500 (peft/pixel_lora/checkpoint-500); the source is the final save (peft/pixel_lora)" if status == "STALE" else None)
        expect(rel, status, "layout_name", message=msg, lora="name:pixel_lora")
    # adapter_config.json differs: its keys are the unit's general metadata.
    qa_cfg = json.loads(cfg)
    qa_cfg["lora_alpha"] = 16
    o.text("deploy/qa/pixel_lora/adapter_config.json", json.dumps(qa_cfg, indent=2, sort_keys=True) + "\n")
    o.st("deploy/qa/pixel_lora/adapter_model.safetensors", p_final, {"format": "pt"})
    expect("deploy/qa/pixel_lora/adapter_model.safetensors", "METADATA_DRIFT", "layout_name",
           issues=["METADATA_MISMATCH"], lora="name:pixel_lora")
    # Deployed under another name: its content says whose it is.
    o.text("deploy/canary/sql-exp/adapter_config.json", cfg)
    o.st("deploy/canary/sql-exp/adapter_model.safetensors", p_final, {"format": "pt"})
    expect("deploy/canary/sql-exp/adapter_model.safetensors", "IN_SYNC", "content", lora="name:pixel_lora")
    # PEFT IA3: not LoRA.
    ia3 = json.loads(cfg)
    ia3["peft_type"] = "IA3"
    o.text("peft/ia3_adapter/adapter_config.json", json.dumps(ia3, indent=2, sort_keys=True) + "\n")
    r = L.gen(5)
    o.st("peft/ia3_adapter/adapter_model.safetensors",
         {"base_model.model.model.layers.0.self_attn.v_proj.ia3_l": r(32, 1)}, {"format": "pt"})
    expect("peft/ia3_adapter/adapter_model.safetensors", "UNRECOGNIZED", why="PEFT IA3 adapter, not LoRA")

    # ---- transformers Trainer output_dir (a source folder by name) -----------------------------------
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model(torch.ones(1, 4)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.5, total_iters=10)
    for step in (500, 1000):
        d = "hf_out/checkpoint-%d/" % step
        o.text(d + "adapter_config.json", cfg)
        o.st(d + "adapter_model.safetensors", L.peft_tensors(step + 1), {"format": "pt"})
        expect(d + "adapter_model.safetensors", "SOURCE" if step == 1000 else "VERSION", "layout_name",
               "checkpoint-%d" % step, lora="name:hf_out")
        o.torch(d + "optimizer.pt", opt.state_dict())
        expect(d + "optimizer.pt", "UNRECOGNIZED", why="optimizer state")
        o.torch(d + "scheduler.pt", sched.state_dict())
        expect(d + "scheduler.pt", "UNRECOGNIZED", why="scheduler state")
        o.torch(d + "rng_state.pth", {"python": [3, 1, 2], "numpy": ["MT19937", 5],
                                      "cpu": torch.zeros(16, dtype=torch.uint8)})
        expect(d + "rng_state.pth", "UNRECOGNIZED", why="RNG state")

    # ---- diffusers -------------------------------------------------------------------------------------
    dmeta = {"format": "pt", "lora_adapter_metadata": json.dumps(
        {"unet": {"r": 4, "lora_alpha": 4, "target_modules": ["to_k", "to_q"], "peft_type": "LORA"}}, sort_keys=True)}
    dt = L.diffusers_tensors(20)
    o.st("train/diffusers/pixel_sdxl/pytorch_lora_weights.safetensors", dt, dmeta)
    expect("train/diffusers/pixel_sdxl/pytorch_lora_weights.safetensors", "SOURCE", "layout_name",
           lora="name:pixel_sdxl")
    o.st("ComfyUI/models/loras/pixel_sdxl/pytorch_lora_weights.safetensors", dt, dmeta)
    expect("ComfyUI/models/loras/pixel_sdxl/pytorch_lora_weights.safetensors", "IN_SYNC", "layout_name",
           lora="name:pixel_sdxl")

    # ---- plain state dicts -----------------------------------------------------------------------------
    r = L.gen(30)
    plain = {"encoder.block.0.lora_A": r(4, 16), "encoder.block.0.lora_B": r(16, 4)}
    o.torch("train/plain/my_lora.pth", plain)
    expect("train/plain/my_lora.pth", "SOURCE", "file_name", lora="name:my_lora")
    o.torch("deploy/plain/my_lora.pth", plain)
    expect("deploy/plain/my_lora.pth", "IN_SYNC", "file_name", lora="name:my_lora")
    # Another name, same tensors: content.
    o.torch("deploy/plain/my_lora_edit.ckpt", plain)
    expect("deploy/plain/my_lora_edit.ckpt", "IN_SYNC", "content", lora="name:my_lora")

    # ---- not LoRAs, and a git-lfs pointer ----------------------------------------------------------------
    o.st("other/model.safetensors", L.full_model_tensors(40), {"format": "pt"})
    expect("other/model.safetensors", "UNRECOGNIZED", why="no LoRA tensor names")
    target = L.st_serialize(k_final, md_final)
    o.text("lfs/pixel_style.safetensors", "version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n"
           % (hashlib.sha256(target).hexdigest(), len(target)))
    expect("lfs/pixel_style.safetensors", "CORRUPT", issues=["LFS_POINTER"])

    with open(os.path.join(root, "expected.json"), "w", encoding="utf-8", newline="\n") as f:
        json.dump({"config": CONFIG, "files": dict(sorted(exp.items()))}, f, indent=2, sort_keys=True)
        f.write("\n")
    write_sha256sums(root)


def main():
    out = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    generate(out)
    n = sum(len(fs) for _, _, fs in os.walk(out))
    print("wrote %d files to %s" % (n, out))


if __name__ == "__main__":
    main()
