/**
 * The Copy Map's rows as plain data (client/src/copyMapModel.ts): a LoRA's source first, its earlier
 * versions in one group (newest first), then its copies; a PEFT / diffusers folder unit named by its
 * folder; how a file was identified, its layout and version in the tooltip; files of no LoRA apart,
 * with why; the folders' hints as the view's message. Reports are shaped as the server sends them for
 * the layout fixtures (test/fixtures/layouts, docs/layouts.md).
 */
import { strict as assert } from 'node:assert';
import {
  fileText,
  filesOfNoLora,
  fileTooltip,
  hashesTooltip,
  hintMessage,
  loraGroups,
  loraRows,
  mdText,
  versionsLabel,
} from '../../client/src/copyMapModel';
import type { FileReport, IdentifiedBy, LoraReport } from '../../server/src/protocol/reports';

const PIXEL = 'name:pixel_style@1874263015';
const PEFT = 'name:pixel_lora';

function file(path: string, status: FileReport['status'], extra: Partial<FileReport> = {}): FileReport {
  return {
    path,
    role: status === 'SOURCE' || status === 'VERSION' ? 'source' : status === 'UNRECOGNIZED' ? null : 'copy',
    lora_id: status === 'UNRECOGNIZED' ? null : PIXEL,
    status,
    message: `${status.toLowerCase()} message`,
    issues: [],
    ...extra,
  };
}

const kohya = (
  path: string,
  status: FileReport['status'],
  version: string,
  identified_by: IdentifiedBy = 'layout_name',
) => file(path, status, { layout: 'kohya', unit: { kind: 'file', path }, version, identified_by });

const peft = (dir: string, weights: string, status: FileReport['status'], version?: string) =>
  file(`${dir}/${weights}`, status, {
    lora_id: PEFT,
    layout: 'peft',
    unit: { kind: 'folder', path: dir },
    identified_by: 'layout_name',
    ...(version ? { version } : {}),
  });

const FILES: FileReport[] = [
  kohya('stable-diffusion-webui/models/Lora/pixel_style.safetensors', 'STALE', 'epoch 8'),
  kohya('train/kohya/pixel_style.safetensors', 'SOURCE', 'epoch 12'),
  kohya('train/kohya/pixel_style-step00000500.safetensors', 'VERSION', 'step 500'),
  kohya('train/kohya/pixel_style-000008.safetensors', 'VERSION', 'epoch 8'),
  kohya('ComfyUI/models/loras/pixel_style_v2.safetensors', 'IN_SYNC', 'epoch 12'),
  peft('peft/pixel_lora/checkpoint-500', 'adapter_model.safetensors', 'VERSION', 'checkpoint-500'),
  peft('deploy/staging/pixel_lora', 'adapter_model.bin', 'IN_SYNC'),
  peft('peft/pixel_lora', 'adapter_model.safetensors', 'SOURCE'),
  peft('deploy/prod/pixel_lora', 'adapter_model.safetensors', 'IN_SYNC'),
  file('other/model.safetensors', 'UNRECOGNIZED', { why: 'no LoRA tensor names' }),
  file('hf_out/checkpoint-500/optimizer.pt', 'UNRECOGNIZED', { why: 'optimizer state' }),
];

const LORAS: LoraReport[] = [
  {
    id: PEFT,
    name: 'pixel_lora',
    source: 'peft/pixel_lora/adapter_model.safetensors',
    sources: [],
    copies: [],
    problems: 0,
  },
  {
    id: PIXEL,
    name: 'pixel_style',
    source: 'train/kohya/pixel_style.safetensors',
    sources: [],
    copies: [],
    problems: 1,
  },
];

/** The rows of one LoRA as text: `path [status]`, a versions group as `Versions (n): a, b`. */
function rowsOf(id: string): string[] {
  const group = loraGroups(LORAS, FILES).find((g) => g.lora.id === id)!;
  return loraRows(group.files).map((r) =>
    r.kind === 'versions'
      ? `${versionsLabel(r.files)}: ${r.files.map((f) => f.path).join(', ')}`
      : `${r.report.path} [${r.report.status}]`,
  );
}

describe('Copy Map model (copyMapModel)', () => {
  it('orders LoRAs with problems first, then by name; files of no LoRA are left to their own group', () => {
    assert.deepEqual(
      loraGroups(LORAS, FILES).map((g) => [g.lora.name, g.files.length]),
      [
        ['pixel_style', 5],
        ['pixel_lora', 4],
      ],
    );
    assert.deepEqual(
      filesOfNoLora(FILES).map((f) => f.path),
      ['hf_out/checkpoint-500/optimizer.pt', 'other/model.safetensors'],
    );
  });

  it("puts a LoRA's source first, its versions after it in one group (newest first), then its copies", () => {
    assert.deepEqual(rowsOf(PIXEL), [
      'train/kohya/pixel_style.safetensors [SOURCE]',
      'Versions (2): train/kohya/pixel_style-step00000500.safetensors, train/kohya/pixel_style-000008.safetensors',
      'ComfyUI/models/loras/pixel_style_v2.safetensors [IN_SYNC]',
      'stable-diffusion-webui/models/Lora/pixel_style.safetensors [STALE]',
    ]);
  });

  it('shows a PEFT adapter as one unit per folder, with its Trainer checkpoint as a version', () => {
    assert.deepEqual(rowsOf(PEFT), [
      'peft/pixel_lora/adapter_model.safetensors [SOURCE]',
      'Versions (1): peft/pixel_lora/checkpoint-500/adapter_model.safetensors',
      'deploy/prod/pixel_lora/adapter_model.safetensors [IN_SYNC]',
      'deploy/staging/pixel_lora/adapter_model.bin [IN_SYNC]',
    ]);
    const unit = FILES.find((f) => f.path === 'peft/pixel_lora/checkpoint-500/adapter_model.safetensors')!;
    assert.deepEqual(fileText(unit), { label: 'peft/pixel_lora/checkpoint-500', description: 'checkpoint-500' });
    const deployed = FILES.find((f) => f.path === 'deploy/staging/pixel_lora/adapter_model.bin')!;
    assert.deepEqual(fileText(deployed), { label: 'deploy/staging/pixel_lora', description: '' });
    // The weights file the report is about is named in the tooltip.
    const tip = fileTooltip(deployed);
    assert.match(
      tip,
      /Unit: the folder ` deploy\/staging\/pixel_lora ` \(weights file ` deploy\/staging\/pixel_lora\/adapter_model\.bin `\)/,
    );
  });

  it('names a file by its name, with its version and folder as the description', () => {
    const v = FILES.find((f) => f.path === 'train/kohya/pixel_style-000008.safetensors')!;
    assert.deepEqual(fileText(v), { label: 'pixel_style-000008.safetensors', description: 'epoch 8 · train/kohya' });
    // A seed file (no layout fields on the wire) looks as before: name, folder.
    const seed: FileReport = {
      path: 'Manchester_United/🎯_WIN_EXPERTS/LoRA_A_4d5e6f.pt',
      role: 'copy',
      lora_id: 'lora_a',
      status: 'STALE',
      message: 'stale',
      issues: [],
    };
    assert.deepEqual(fileText(seed), { label: 'LoRA_A_4d5e6f.pt', description: 'Manchester_United/🎯_WIN_EXPERTS' });
    assert.deepEqual(loraRows([seed]), [{ kind: 'file', report: seed }]);
  });

  it('says in the tooltip how each file was identified, its layout and its version', () => {
    const words = {
      metadata_id: 'its metadata id',
      sync_record: 'our sync record',
      layout_name: "its layout's name",
      file_name: 'its file name',
      content: 'its content',
    } as const;
    for (const [key, text] of Object.entries(words)) {
      const tip = fileTooltip(kohya('a/b.safetensors', 'IN_SYNC', 'epoch 12', key as keyof typeof words));
      assert.ok(tip.includes(`Identified by ${mdText(text)}`), `${key}: ${tip}`);
      assert.ok(tip.includes('Layout: kohya LoRA'), tip);
      assert.ok(tip.includes(`Version: ${mdText('epoch 12')}`), tip);
    }
    const stale = fileTooltip(FILES[0]);
    assert.match(stale, /^\*\*stale\*\* \(` STALE `\)/);
  });

  it("shows an unrecognized file's why in its description and tooltip", () => {
    const other = FILES.find((f) => f.path === 'other/model.safetensors')!;
    assert.deepEqual(fileText(other), { label: 'model.safetensors', description: 'no LoRA tensor names · other' });
    assert.ok(fileTooltip(other).includes(`Not a LoRA: ${mdText('no LoRA tensor names')}`));
    assert.ok(fileTooltip(other).startsWith('**not a LoRA**'));
  });

  it('escapes markdown from file names and messages in the tooltip', () => {
    const f = file('x/[evil](command:loraSync.syncAll).pt', 'STALE', { message: '*bold* <img src=x>' });
    const tip = fileTooltip(f);
    // Inside a code span a link is text; outside one it must not appear unescaped.
    assert.ok(!tip.replace(/` [^`]* `/g, '').includes('](command:'), tip);
    assert.ok(tip.includes('\\*bold\\* \\<img src=x\\>'), tip);
  });

  it("gives the view's message from the folders' hints", () => {
    assert.equal(hintMessage([{ root: '/ws' }]), undefined);
    assert.equal(hintMessage([{ root: '/ws', hint: 'No source folder.' }]), 'No source folder.');
    assert.equal(
      hintMessage([{ root: '/a/one', hint: 'No source folder.' }, { root: '/b/two' }]),
      'one: No source folder.',
    );
  });
});

describe("Copy Map model: the hashes in a hovered row's tooltip", () => {
  const h = {
    sha256: 'ab'.repeat(32),
    autoV2: 'abababab01',
    autoV3: 'cdcdcdcdcd02',
    dataSha256: 'cd'.repeat(32),
    legacy: '1234abcd',
    legacyWindowBytes: 0,
    embeddedMismatches: [] as Array<{ key: string; embedded: string; actual: string; detail: string }>,
  };
  it('AutoV2 and AutoV3 upper-case as Civitai shows them; the legacy hash only for a file with its window', () => {
    assert.equal(hashesTooltip(h), 'Hashes: AutoV2 `ABABABAB01` · AutoV3 `CDCDCDCDCD02`');
    assert.equal(
      hashesTooltip({ ...h, autoV3: undefined, legacyWindowBytes: 65536 }),
      'Hashes: AutoV2 `ABABABAB01` · legacy `1234abcd`',
    );
  });
  it('names each embedded hash that does not match the file', () => {
    const t = hashesTooltip({
      ...h,
      embeddedMismatches: [{ key: 'sshs_model_hash', embedded: 'e3b0', actual: 'cd', detail: 'the empty-input hash' }],
    });
    assert.ok(t.includes('\n\n- ` sshs_model_hash ` does not match this file: the empty'), t);
  });
});
