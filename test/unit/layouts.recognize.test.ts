import assert from 'node:assert/strict';
import { nameFromFileName } from '../../server/src/layouts/fileName';
import { recognize } from '../../server/src/layouts/recognize';
import { isKohyaTensorName, isLoraTensorName } from '../../server/src/layouts/tensorNames';
import type { LayoutInput, Recognition } from '../../server/src/layouts/types';
import { layoutInput, WORKSPACE } from '../support/layoutFixtures';

type Want = Partial<Recognition> & Record<string, unknown>;

/** Every LoRA-looking fixture file and what it is (role: copy unless said). */
const CASES: Array<[string, Want]> = [
  // kohya training output and the UIs' copies
  [
    'train/kohya/pixel_style-000008.safetensors',
    {
      layout: 'kohya',
      name: 'pixel_style',
      session: '1874263015',
      version: { steps: 400, epoch: 8, finishedAt: 1714581600.123456, nameEpoch: 8 },
    },
  ],
  [
    'train/kohya/pixel_style-step00000500.safetensors',
    {
      layout: 'kohya',
      name: 'pixel_style',
      version: { steps: 500, epoch: 10, finishedAt: 1714587600.123456, nameStep: 500 },
    },
  ],
  ['train/kohya/pixel_style.safetensors', { layout: 'kohya', name: 'pixel_style', session: '1874263015' }],
  ['train/kohya_run2/pixel_style.safetensors', { layout: 'kohya', name: 'pixel_style', session: '290611437' }],
  ['train/kohya_pt/pixel_style-000004.pt', { layout: 'kohya', name: 'pixel_style', version: { nameEpoch: 4 } }],
  ['train/kohya_pt/pixel_style.pt', { layout: 'kohya', name: 'pixel_style', version: undefined, session: undefined }],
  // renamed in ComfyUI: ss_output_name still names it
  ['ComfyUI/models/loras/pixel_style_v2.safetensors', { layout: 'kohya', name: 'pixel_style' }],
  ['stable-diffusion-webui/models/Lora/pixel_style.safetensors', { layout: 'kohya', name: 'pixel_style' }],
  // no metadata: the file name without kohya's suffix
  [
    'ComfyUI/models/loras/anime_lines-000003.safetensors',
    { layout: 'kohya', name: 'anime_lines', version: { nameEpoch: 3 } },
  ],
  // PEFT
  [
    'peft/pixel_lora/adapter_model.safetensors',
    { layout: 'peft', name: 'pixel_lora', unit: { kind: 'folder', path: 'peft/pixel_lora' }, version: undefined },
  ],
  [
    'peft/pixel_lora/checkpoint-500/adapter_model.safetensors',
    {
      layout: 'peft',
      name: 'pixel_lora',
      unit: { kind: 'folder', path: 'peft/pixel_lora/checkpoint-500' },
      version: { checkpointStep: 500 },
    },
  ],
  ['deploy/prod/pixel_lora/adapter_model.safetensors', { layout: 'peft', name: 'pixel_lora' }],
  ['deploy/staging/pixel_lora/adapter_model.bin', { layout: 'peft', name: 'pixel_lora', reason: undefined }],
  ['peft/multi/style_b/adapter_model.safetensors', { layout: 'peft', name: 'style_b' }],
  ['peft/dora_lora/adapter_model.safetensors', { layout: 'peft', name: 'dora_lora' }],
  [
    'hf_out/checkpoint-500/adapter_model.safetensors',
    { layout: 'peft', name: 'hf_out', version: { checkpointStep: 500 } },
  ],
  [
    'hf_out/checkpoint-1000/adapter_model.safetensors',
    { layout: 'peft', name: 'hf_out', version: { checkpointStep: 1000 } },
  ],
  // diffusers
  [
    'diffusers/pixel_sdxl/pytorch_lora_weights.safetensors',
    {
      layout: 'diffusers',
      name: 'pixel_sdxl',
      unit: { kind: 'folder', path: 'diffusers/pixel_sdxl' },
      reason: undefined,
    },
  ],
  ['diffusers/old_style/pytorch_lora_weights.bin', { layout: 'diffusers', name: 'old_style', reason: undefined }],
  // plain state dicts
  ['plain/my_lora.pth', { layout: 'state-dict', name: 'my_lora', unit: { kind: 'file', path: 'plain/my_lora.pth' } }],
  ['plain/my_lora_edit.ckpt', { layout: 'state-dict', name: 'my_lora_edit' }],
  // not LoRAs
  ['other/model.safetensors', { layout: 'unrecognized', why: 'no LoRA tensor names' }],
  ['hf_out/checkpoint-500/optimizer.pt', { layout: 'unrecognized', why: 'optimizer state' }],
  ['hf_out/checkpoint-500/scheduler.pt', { layout: 'unrecognized', why: 'scheduler state' }],
  ['hf_out/checkpoint-500/rng_state.pth', { layout: 'unrecognized', why: 'RNG state' }],
  ['peft/ia3_adapter/adapter_model.safetensors', { layout: 'unrecognized', why: 'PEFT IA3 adapter, not LoRA' }],
];

function assertHas(got: Recognition, want: Want, what: string): void {
  for (const [k, v] of Object.entries(want))
    assert.deepEqual((got as unknown as Record<string, unknown>)[k], v, `${what}: ${k} of ${JSON.stringify(got)}`);
}

describe('layouts: recognizers on files real tools write (read with openCheckpoint)', () => {
  for (const [rel, want] of CASES) {
    it(`${rel} → ${want.layout}${'name' in want ? ` ${want.name}` : ''}`, async () => {
      const got = recognize(await layoutInput(rel), 'copy');
      assertHas(got, want, rel);
      if (got.layout !== 'unrecognized' && got.unit.kind === 'file') assert.equal(got.unit.path, rel);
    });
  }

  it('the description holds what the header gives: metadata, tensor names, the pickle top level', async () => {
    const st = await layoutInput('train/kohya/pixel_style-000008.safetensors');
    assert.equal(st.format, 'safetensors');
    assert.equal(st.metadata?.ss_output_name, 'pixel_style');
    assert.ok(st.tensorNames.includes('lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.alpha'));
    assert.equal(st.torchTop, undefined);
    const bin = await layoutInput('deploy/staging/pixel_lora/adapter_model.bin');
    assert.equal(bin.format, 'torch-zip');
    assert.deepEqual(bin.torchTop, { kind: 'state-dict' });
    assert.ok(bin.tensorNames.includes('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight'));
    assert.equal((bin.adapterConfig as { peft_type: string }).peft_type, 'LORA');
    const opt = await layoutInput('hf_out/checkpoint-500/optimizer.pt');
    assert.deepEqual(opt.torchTop, { kind: 'dict', keys: ['state', 'param_groups'] });
  });

  it('the seed layout: metadata.id, and file names for a dict without one (the committed workspace)', async () => {
    const src = recognize(await layoutInput('⭐_AKTIF_EN_IYILER/LoRA_A.pt', WORKSPACE), 'source');
    assert.deepEqual(src, {
      layout: 'seed',
      name: 'LoRA_A',
      unit: { kind: 'file', path: '⭐_AKTIF_EN_IYILER/LoRA_A.pt' },
      id: 'lora_a',
    });
    const copy = recognize(await layoutInput('💎_PERFECT_HYBRID_HALL/LoRA_I_0a1b2c.pt', WORKSPACE), 'copy');
    assert.equal(copy.layout, 'seed');
    assert.equal(copy.layout === 'seed' && copy.name, 'LoRA_I');
    assert.equal(copy.layout === 'seed' && copy.id, undefined);
    // The legacy-format source is a seed file too.
    assert.equal(recognize(await layoutInput('⭐_AKTIF_EN_IYILER/LoRA_H.pt', WORKSPACE), 'source').layout, 'seed');
    // A plain nn.Linear state_dict is no LoRA.
    assert.deepEqual(recognize(await layoutInput('models/state_dict.pt', WORKSPACE), 'copy'), {
      layout: 'unrecognized',
      why: 'no LoRA tensor names',
    });
  });
});

/** A hand-made input for cases no fixture needs a file for. */
function input(over: Partial<LayoutInput>): LayoutInput {
  return { path: 'x.safetensors', format: 'safetensors', tensorNames: [], metadata: null, siblings: [], ...over };
}

describe('layouts: recognizer edge cases', () => {
  const kohyaNames = ['lora_unet_mid_block_attn.lora_down.weight', 'lora_unet_mid_block_attn.lora_up.weight'];

  it('a kohya suffix is a version only when it is kohya own (ss_output_name wins)', () => {
    const r = recognize(
      input({
        path: 'loras/photo-202405.safetensors',
        tensorNames: kohyaNames,
        metadata: { ss_output_name: 'photo-202405' },
      }),
      'copy',
    );
    assert.equal(r.layout === 'kohya' && r.name, 'photo-202405');
    assert.equal(r.layout === 'kohya' && r.version, undefined);
    const renamed = recognize(
      input({
        path: 'loras/mine-000003.safetensors',
        tensorNames: kohyaNames,
        metadata: { ss_output_name: 'pixel_style', ss_epoch: '3' },
      }),
      'copy',
    );
    assert.deepEqual(renamed.layout === 'kohya' && renamed.version, { epoch: 3 });
  });

  it('a PEFT adapter file without adapter_config.json is still PEFT, with the reason', () => {
    const r = recognize(
      input({ path: 'a/b/adapter_model.safetensors', tensorNames: ['base_model.model.q.lora_A.weight'], siblings: [] }),
      'copy',
    );
    assert.equal(r.layout, 'peft');
    assert.equal(r.layout === 'peft' && r.name, 'b');
    assert.equal(r.layout === 'peft' && r.reason, 'no adapter_config.json beside it');
  });

  it('a named adapter inside a Trainer checkpoint: adapter name, checkpoint step', () => {
    const r = recognize(
      input({
        path: 'out/checkpoint-250/style_b/adapter_model.bin',
        format: 'torch-zip',
        torchTop: { kind: 'state-dict' },
        tensorNames: ['base_model.model.q.lora_B.weight'],
        siblings: ['adapter_config.json'],
      }),
      'copy',
    );
    assert.equal(r.layout === 'peft' && r.name, 'style_b');
    assert.deepEqual(r.layout === 'peft' && r.version, { checkpointStep: 250 });
  });

  it('kohya names mixed with others are not kohya; LyCORIS and empty files say why', () => {
    const mixed = recognize(
      input({ path: 'm.safetensors', tensorNames: [...kohyaNames, 'unet.x.lora_A.weight'] }),
      'copy',
    );
    assert.equal(mixed.layout, 'state-dict');
    assert.deepEqual(recognize(input({ tensorNames: ['lora_unet_x.hada_w1_a', 'lora_unet_x.hada_w1_b'] }), 'copy'), {
      layout: 'unrecognized',
      why: 'LyCORIS network (LoHa/LoKr/OFT), not LoRA',
    });
    assert.deepEqual(recognize(input({}), 'copy'), { layout: 'unrecognized', why: 'no tensors' });
    assert.deepEqual(recognize(input({ format: 'torchscript', torchTop: { kind: 'other' } }), 'copy'), {
      layout: 'unrecognized',
      why: 'TorchScript module',
    });
  });

  it('a seed safetensors file (metadata id) is seed; a dict with other values is not a state dict', () => {
    const r = recognize(
      input({ path: 'h/LoRA_A_1a2b3c.safetensors', metadata: { id: 'lora_a' }, tensorNames: ['w'] }),
      'copy',
    );
    assert.deepEqual(r, {
      layout: 'seed',
      name: 'LoRA_A',
      unit: { kind: 'file', path: 'h/LoRA_A_1a2b3c.safetensors' },
      id: 'lora_a',
    });
    const d = recognize(
      input({
        path: 'x.pt',
        format: 'torch-zip',
        torchTop: { kind: 'dict', keys: ['weights', 'step'] },
        tensorNames: ['weights.lora_A'],
      }),
      'copy',
    );
    assert.deepEqual(d, { layout: 'unrecognized', why: 'LoRA tensors inside a dict that is not a state dict' });
  });

  it('LoRA tensor names are matched on whole name components', () => {
    assert.ok(isLoraTensorName('base_model.model.q.lora_A.weight'));
    assert.ok(isLoraTensorName('x.lora_magnitude_vector'));
    assert.ok(isLoraTensorName('unet.a.processor.to_q_lora.down.weight'));
    assert.ok(isLoraTensorName('text_encoder.a.lora_linear_layer.up.weight'));
    assert.ok(!isLoraTensorName('flora_head.weight'));
    assert.ok(!isLoraTensorName('model.lora_Alpha.weight'));
    assert.ok(isKohyaTensorName('lora_te2_text_model_encoder_layers_0_mlp_fc1.alpha'));
    assert.ok(!isKohyaTensorName('lora_unet_x.weight'));
  });
});

describe('layouts: nameFromFileName', () => {
  it('strips only the seed copy suffix (underscore + 6 hex) and only from copies', () => {
    assert.equal(nameFromFileName('a/LoRA_A_1a2b3c.pt', 'copy'), 'LoRA_A');
    assert.equal(nameFromFileName('a/LoRA_🎯_emoji_ab12cd.pt', 'copy'), 'LoRA_🎯_emoji');
    assert.equal(nameFromFileName('a/LoRA_A_1a2b3c.pt', 'source'), 'LoRA_A_1a2b3c');
    assert.equal(nameFromFileName('m/pixel_style.safetensors', 'copy'), 'pixel_style');
    assert.equal(nameFromFileName('m/pixel_style_edit.safetensors', 'copy'), 'pixel_style_edit');
    assert.equal(nameFromFileName('m/pixel_style_v2.safetensors', 'copy'), 'pixel_style_v2');
    // 4 or 8 characters, upper case, or non-hex letters are part of the name
    assert.equal(nameFromFileName('m/style_abcd.pt', 'copy'), 'style_abcd');
    assert.equal(nameFromFileName('m/style_ABCDEF.pt', 'copy'), 'style_ABCDEF');
    assert.equal(nameFromFileName('m/style_1a2b3c4d.pt', 'copy'), 'style_1a2b3c4d');
    assert.equal(nameFromFileName('m/style_1a2b3g.pt', 'copy'), 'style_1a2b3g');
    assert.equal(nameFromFileName('m/my_lora.ckpt', 'copy'), 'my_lora');
    assert.equal(nameFromFileName('m/my_lora.pth', 'copy'), 'my_lora');
    assert.equal(nameFromFileName('m/adapter_model.bin', 'copy'), 'adapter_model');
  });
});
