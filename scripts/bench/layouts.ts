/**
 * Real-layouts workspaces for `npm run bench` (issue 13), written from the safetensors format (8-byte
 * little-endian header length, the JSON header with `__metadata__` first, padded with spaces to a
 * multiple of 8 as the safetensors library pads it, then the data, tensors in `safetensors.torch.save`'s
 * order) rather than by the engine's own writer:
 *
 * - `generateLayoutsWorkspace`: many small kohya LoRAs, each a training run in `train/` (epochs
 *   `{name}-{epoch:06d}.safetensors` and the final `{name}.safetensors`, full `ss_*` and `modelspec.*`
 *   metadata; 3 runs of 4 embed kohya's `sshs_model_hash` (SHA-256 of the data section) and
 *   `sshs_legacy_hash` (from the engine's `kohyaLegacyHash`, the one engine function used here; under
 *   1 MiB it is the empty window's hash), both right), copied into `ComfyUI/models/loras/` and
 *   `stable-diffusion-webui/models/Lora/` (most equal to the final save, some equal to an older epoch:
 *   STALE); and many PEFT adapter folders (`train/<name>/adapter_config.json` + `adapter_model.safetensors`,
 *   every other one with a Trainer `checkpoint-100/`), deployed to `deploy/prod/<name>/` (the final) and,
 *   for those with a checkpoint, `deploy/staging/<name>/` (the checkpoint: STALE).
 * - `generateBigLayouts`: a few 200 MB kohya runs (an epoch and the final save, hashes embedded), the
 *   final copied to ComfyUI (IN_SYNC), the epoch to A1111 (STALE).
 *
 * Each generator returns every file's intended status and layout (`layoutsBench.ts` checks the engine
 * sees exactly that before measuring).
 */
import { createHash, randomFillSync } from 'node:crypto';
import { copyFile, mkdir, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { kohyaLegacyHash, ssOnly } from '../../server/src/layouts/ecosystemHashes';

type Dtype = 'F16' | 'F32';
interface Tensor {
  name: string;
  dtype: Dtype;
  shape: number[];
}
const ITEM: Record<Dtype, number> = { F16: 2, F32: 4 };
const nbytes = (t: Tensor) => t.shape.reduce((a, b) => a * b, 1) * ITEM[t.dtype];

export interface Intended {
  status: 'SOURCE' | 'VERSION' | 'IN_SYNC' | 'STALE';
  layout: 'kohya' | 'peft';
}
/** What a generator wrote: each LoRA file (relative path) with what the engine should make of it. */
export interface Generated {
  files: Record<string, Intended>;
  bytes: number;
  /** Files that embed kohya's hashes. */
  embedding: number;
}

/** Random tensor data with no inf/NaN (bit 6 of each value's top byte cleared: |x| < 2). */
function tensorData(tensors: Tensor[]): Buffer {
  const data = Buffer.allocUnsafe(tensors.reduce((a, t) => a + nbytes(t), 0));
  randomFillSync(data);
  let at = 0;
  for (const t of tensors) {
    const n = nbytes(t);
    for (let i = at + ITEM[t.dtype] - 1; i < at + n; i += ITEM[t.dtype]) data[i] &= 0xbf;
    at += n;
  }
  return data;
}

/** One dtype per file here, so save order is by name (UTF-8 bytes; the names are ASCII). */
const saveOrder = (ts: Tensor[]) => [...ts].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

async function writeSafetensors(
  path: string,
  tensors: Tensor[],
  data: Buffer,
  metadata?: Record<string, string>,
): Promise<number> {
  const parts: string[] = metadata ? [`"__metadata__":${JSON.stringify(metadata)}`] : [];
  let off = 0;
  for (const t of tensors) {
    const n = nbytes(t);
    parts.push(
      `${JSON.stringify(t.name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(',')}],"data_offsets":[${off},${off + n}]}`,
    );
    off += n;
  }
  if (off !== data.length) throw new Error(`${path}: ${data.length} data bytes for ${off} bytes of tensors`);
  const json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  const head = Buffer.alloc(8 + padded, 0x20);
  head.writeBigUInt64LE(BigInt(padded), 0);
  json.copy(head, 8);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, [head, data]);
  return head.length + data.length;
}

// ------------------------------------------------------------------------------------------------
// kohya

const UNET_MODULES = [
  'attn1_to_q',
  'attn1_to_k',
  'attn1_to_v',
  'attn1_to_out_0',
  'attn2_to_q',
  'attn2_to_k',
  'attn2_to_v',
  'attn2_to_out_0',
  'ff_net_0_proj',
  'ff_net_2',
];

/** kohya's module names for an SD UNet, in model order; `te` text-encoder modules first when asked. */
function kohyaModules(count: number, te: number): string[] {
  const out: string[] = [];
  for (let l = 0; l < te; l++)
    out.push(
      `lora_te_text_model_encoder_layers_${l}_self_attn_q_proj`,
      `lora_te_text_model_encoder_layers_${l}_mlp_fc1`,
    );
  for (const part of ['down', 'mid', 'up'])
    for (let b = 0; b < (part === 'mid' ? 1 : 4); b++)
      for (let a = 0; a < 3; a++) {
        const block = part === 'mid' ? 'lora_unet_mid_block' : `lora_unet_${part}_blocks_${b}`;
        out.push(`${block}_attentions_${a}_proj_in`, `${block}_attentions_${a}_proj_out`);
        for (let t = 0; t < 10; t++)
          for (const m of UNET_MODULES) out.push(`${block}_attentions_${a}_transformer_blocks_${t}_${m}`);
      }
  if (out.length < count) throw new Error(`only ${out.length} kohya module names`);
  return out.slice(0, count);
}

function kohyaTensors(modules: string[], rank: number, dim: number): Tensor[] {
  return saveOrder(
    modules.flatMap((m): Tensor[] => [
      { name: `${m}.alpha`, dtype: 'F16', shape: [] },
      { name: `${m}.lora_down.weight`, dtype: 'F16', shape: [rank, dim] },
      { name: `${m}.lora_up.weight`, dtype: 'F16', shape: [dim, rank] },
    ]),
  );
}

interface KohyaRun {
  name: string;
  session: string;
  epochs: number;
  rank: number;
  embed: boolean;
}

function kohyaMetadata(run: KohyaRun, epoch: number): Record<string, string> {
  const steps = 250;
  const started = 1764000000 + Number(run.session.slice(-5));
  const tags: Record<string, number> = {};
  for (let i = 0; i < 40; i++) tags[`${run.name} tag_${i}`] = 40 - i;
  return {
    ss_session_id: run.session,
    ss_training_started_at: String(started),
    ss_output_name: run.name,
    ss_learning_rate: '0.0001',
    ss_text_encoder_lr: '5e-05',
    ss_unet_lr: '0.0001',
    ss_num_train_images: '40',
    ss_num_batches_per_epoch: String(steps),
    ss_num_epochs: String(run.epochs),
    ss_epoch: String(epoch),
    ss_steps: String(epoch * steps),
    ss_max_train_steps: String(run.epochs * steps),
    ss_lr_scheduler: 'cosine',
    ss_network_module: 'networks.lora',
    ss_network_dim: String(run.rank),
    ss_network_alpha: String(run.rank / 2),
    ss_mixed_precision: 'fp16',
    ss_optimizer: 'bitsandbytes.optim.adamw.AdamW8bit',
    ss_sd_model_name: 'v1-5-pruned-emaonly.safetensors',
    ss_base_model_version: 'sd_v1',
    ss_resolution: '(512, 512)',
    ss_seed: '42',
    ss_training_finished_at: String(started + epoch * 600),
    ss_tag_frequency: JSON.stringify({ [`10_${run.name}`]: tags }),
    'modelspec.sai_model_spec': '1.0.0',
    'modelspec.architecture': 'stable-diffusion-v1/lora',
    'modelspec.implementation': 'https://github.com/Stability-AI/generative-models',
    'modelspec.title': `${run.name}${epoch < run.epochs ? `-${String(epoch).padStart(6, '0')}` : ''}`,
    'modelspec.resolution': '512x512',
    'modelspec.date': new Date((started + epoch * 600) * 1000).toISOString(),
  };
}

/** One kohya save: metadata, and when `embed`, the hashes kohya embeds (right for these bytes). */
async function writeKohya(path: string, run: KohyaRun, epoch: number, tensors: Tensor[]): Promise<number> {
  const data = tensorData(tensors);
  const md = kohyaMetadata(run, epoch);
  if (run.embed) {
    md.sshs_model_hash = createHash('sha256').update(data).digest('hex');
    const spans = tensors.map((t, i, all) => {
      const begin = all.slice(0, i).reduce((a, x) => a + nbytes(x), 0);
      return { ...t, begin, end: begin + nbytes(t) };
    });
    const legacy = await kohyaLegacyHash(ssOnly(md), spans, async (o, n) => data.subarray(o, o + n));
    if (!('value' in legacy)) throw new Error(`${path}: ${legacy.why}`);
    md.sshs_legacy_hash = legacy.value;
  }
  return writeSafetensors(path, tensors, data, md);
}

const epochName = (name: string, epoch: number, epochs: number) =>
  epoch < epochs ? `${name}-${String(epoch).padStart(6, '0')}.safetensors` : `${name}.safetensors`;

const COMFY = 'ComfyUI/models/loras';
const A1111 = 'stable-diffusion-webui/models/Lora';
const WORDS = ['pixel', 'anime', 'ink', 'neon', 'clay', 'watercolor', 'lineart'];

/** One kohya run: its saves in `train/`, and copies (`copies`: [folder, epoch]) under their file names. */
async function kohyaRun(
  root: string,
  run: KohyaRun,
  tensors: Tensor[],
  copies: Array<[string, number]>,
  out: Generated,
): Promise<void> {
  for (let e = 1; e <= run.epochs; e++) {
    const rel = `train/${epochName(run.name, e, run.epochs)}`;
    out.bytes += await writeKohya(join(root, rel), run, e, tensors);
    out.files[rel] = { status: e === run.epochs ? 'SOURCE' : 'VERSION', layout: 'kohya' };
    if (run.embed) out.embedding++;
  }
  for (const [folder, e] of copies) {
    const from = `train/${epochName(run.name, e, run.epochs)}`;
    // UIs copy a file under its own name.
    const rel = `${folder}/${basename(from)}`;
    await mkdir(join(root, folder), { recursive: true });
    await copyFile(join(root, from), join(root, rel));
    out.bytes += (await stat(join(root, rel))).size;
    out.files[rel] = { status: e === run.epochs ? 'IN_SYNC' : 'STALE', layout: 'kohya' };
    if (run.embed) out.embedding++;
  }
}

// ------------------------------------------------------------------------------------------------
// PEFT

function peftConfig(name: string, rank: number): string {
  return `${JSON.stringify(
    {
      alpha_pattern: {},
      auto_mapping: null,
      base_model_name_or_path: 'Qwen/Qwen2.5-0.5B',
      bias: 'none',
      fan_in_fan_out: false,
      inference_mode: true,
      init_lora_weights: true,
      lora_alpha: rank * 2,
      lora_dropout: 0.05,
      modules_to_save: null,
      peft_type: 'LORA',
      peft_version: '0.13.2',
      r: rank,
      rank_pattern: {},
      revision: null,
      target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj'],
      task_type: 'CAUSAL_LM',
      use_dora: false,
      use_rslora: false,
      // not PEFT's: lets two adapters' configs differ as real ones do
      _bench_name: name,
    },
    null,
    2,
  )}\n`;
}

function peftTensors(layers: number, rank: number, dim: number): Tensor[] {
  const ts: Tensor[] = [];
  for (let l = 0; l < layers; l++)
    for (const m of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) {
      const p = `base_model.model.model.layers.${l}.self_attn.${m}`;
      ts.push({ name: `${p}.lora_A.weight`, dtype: 'F32', shape: [rank, dim] });
      ts.push({ name: `${p}.lora_B.weight`, dtype: 'F32', shape: [dim, rank] });
    }
  return saveOrder(ts);
}

async function peftAdapter(root: string, name: string, withCheckpoint: boolean, out: Generated): Promise<void> {
  const rank = 8;
  const tensors = peftTensors(4, rank, 256);
  const config = peftConfig(name, rank);
  const write = async (folder: string, data: Buffer, status: Intended['status']) => {
    await mkdir(join(root, folder), { recursive: true });
    await writeFile(join(root, folder, 'adapter_config.json'), config);
    out.bytes += await writeSafetensors(join(root, folder, 'adapter_model.safetensors'), tensors, data, {
      format: 'pt',
    });
    out.files[`${folder}/adapter_model.safetensors`] = { status, layout: 'peft' };
  };
  const final = tensorData(tensors);
  await write(`train/${name}`, final, 'SOURCE');
  await write(`deploy/prod/${name}`, final, 'IN_SYNC');
  if (withCheckpoint) {
    const ckpt = tensorData(tensors);
    await write(`train/${name}/checkpoint-100`, ckpt, 'VERSION');
    await write(`deploy/staging/${name}`, ckpt, 'STALE');
  }
}

// ------------------------------------------------------------------------------------------------
// Workspaces

async function config(root: string): Promise<void> {
  await mkdir(root, { recursive: true });
  await writeFile(join(root, 'lora-sync.json'), `${JSON.stringify({ sourceFolders: ['train'] }, null, 2)}\n`);
}

/** `kohya` small kohya runs (4 saves each, ~110 kB a file) and `peft` PEFT adapters (~260 kB a file). */
export async function generateLayoutsWorkspace(
  root: string,
  opts: { kohya: number; peft: number },
): Promise<Generated> {
  await config(root);
  const out: Generated = { files: {}, bytes: 0, embedding: 0 };
  const rank = 8;
  const tensors = kohyaTensors(kohyaModules(24, 2), rank, 128);
  for (let i = 0; i < opts.kohya; i++) {
    const run: KohyaRun = {
      name: `${WORDS[i % WORDS.length]}_style_n${i}`,
      session: String(1874260000 + i * 7919),
      epochs: 4,
      rank,
      embed: i % 4 !== 3,
    };
    // ComfyUI: the final save, or (1 in 5) the epoch before it; A1111: the final, or (1 in 3) epoch 2.
    const copies: Array<[string, number]> = [
      [COMFY, i % 5 === 0 ? 3 : 4],
      [A1111, i % 3 === 0 ? 2 : 4],
    ];
    await kohyaRun(root, run, tensors, copies, out);
  }
  for (let j = 0; j < opts.peft; j++) await peftAdapter(root, `qwen_adapter_n${j}`, j % 2 === 1, out);
  return out;
}

/** `count` kohya runs of `mb` MB a save (SD-XL-like rank 64 over 1280 features), hashes embedded. */
export async function generateBigLayouts(root: string, opts: { count: number; mb: number }): Promise<Generated> {
  await config(root);
  const out: Generated = { files: {}, bytes: 0, embedding: 0 };
  const rank = 64;
  const dim = 1280;
  const modules = Math.round((opts.mb * 1e6) / (2 * rank * dim * 2 + 2));
  const tensors = kohyaTensors(kohyaModules(modules, 0), rank, dim);
  for (let i = 0; i < opts.count; i++) {
    const run: KohyaRun = {
      name: `big_style_n${i}`,
      session: String(290610000 + i * 104729),
      epochs: 2,
      rank,
      embed: true,
    };
    await kohyaRun(
      root,
      run,
      tensors,
      [
        [COMFY, 2],
        [A1111, 1],
      ],
      out,
    );
  }
  return out;
}
