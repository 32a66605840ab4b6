import assert from 'node:assert/strict';
import { recognize } from '../../server/src/layouts/recognize';
import { displayNames, layoutLoraId, runOfCopy } from '../../server/src/layouts/runs';
import type { Recognized } from '../../server/src/layouts/types';
import {
  checkpointStepOf,
  compareProgress,
  pickSource,
  staleVersionMessage,
  versionFromStem,
  versionLabel,
  versionedOf,
} from '../../server/src/layouts/versions';
import { layoutInput } from '../support/layoutFixtures';

async function recognized(rel: string): Promise<Recognized> {
  const r = recognize(await layoutInput(rel), 'source');
  assert.notEqual(r.layout, 'unrecognized', rel);
  return r as Recognized;
}

describe('layouts: versions from names', () => {
  it('parses kohya suffixes and checkpoint folders, nothing else', () => {
    assert.deepEqual(versionFromStem('pixel_style-000008'), { base: 'pixel_style', nameEpoch: 8 });
    assert.deepEqual(versionFromStem('pixel_style-step00000500'), { base: 'pixel_style', nameStep: 500 });
    assert.deepEqual(versionFromStem('pixel-style-000010'), { base: 'pixel-style', nameEpoch: 10 });
    assert.deepEqual(versionFromStem('pixel_style'), { base: 'pixel_style' });
    assert.deepEqual(versionFromStem('pixel_style-00008'), { base: 'pixel_style-00008' });
    assert.deepEqual(versionFromStem('pixel_style-step500'), { base: 'pixel_style-step500' });
    assert.equal(checkpointStepOf('checkpoint-500'), 500);
    assert.equal(checkpointStepOf('checkpoint-best'), undefined);
    assert.equal(checkpointStepOf('my-checkpoint-500'), undefined);
  });

  it('labels: epoch, step, checkpoint, finished time', () => {
    assert.equal(versionLabel({ steps: 400, epoch: 8, nameEpoch: 8 }), 'epoch 8');
    assert.equal(versionLabel({ steps: 500, epoch: 10, nameStep: 500 }), 'step 500');
    assert.equal(versionLabel({ checkpointStep: 500 }), 'checkpoint-500');
    assert.equal(versionLabel({ nameEpoch: 3 }), 'epoch 3');
    assert.equal(versionLabel({ steps: 700 }), 'step 700');
    assert.equal(versionLabel({ finishedAt: 1714593600 }), 'saved 2024-05-01T20:00Z');
    assert.equal(versionLabel({}), undefined);
    assert.equal(versionLabel(undefined), undefined);
  });
});

describe('layouts: ordering and picking the source', () => {
  it('orders by ss_steps before ss_epoch before names before finish time', () => {
    // ss_steps decides even when the epochs say the opposite (a resumed run restarts its epochs)
    assert.ok(compareProgress({ steps: 900, epoch: 1 }, { steps: 500, epoch: 10 }) > 0);
    assert.ok(compareProgress({ epoch: 2, nameEpoch: 9 }, { epoch: 3, nameEpoch: 1 }) < 0);
    assert.ok(compareProgress({ checkpointStep: 1000 }, { checkpointStep: 500 }) > 0);
    assert.ok(compareProgress({ nameStep: 500 }, { checkpointStep: 400 }) > 0);
    assert.ok(compareProgress({ nameEpoch: 2, finishedAt: 9 }, { nameEpoch: 3, finishedAt: 1 }) < 0);
    assert.ok(compareProgress({ finishedAt: 9 }, { finishedAt: 1 }) > 0);
    // a criterion only one side has does not decide
    assert.equal(compareProgress({ steps: 5 }, { epoch: 3 }), 0);
    assert.equal(compareProgress(undefined, { epoch: 3 }), 0);
  });

  it('the kohya training folder: the final save is the source, epochs and step saves are versions', async () => {
    const files = await Promise.all(
      [
        'train/kohya/pixel_style-000008.safetensors',
        'train/kohya/pixel_style.safetensors',
        'train/kohya/pixel_style-step00000500.safetensors',
      ].map(recognized),
    );
    const pick = pickSource(files.map(versionedOf));
    assert.deepEqual(pick, {
      kind: 'picked',
      source: 'train/kohya/pixel_style.safetensors',
      versions: ['train/kohya/pixel_style-000008.safetensors', 'train/kohya/pixel_style-step00000500.safetensors'],
      by: 'ss_steps',
    });
  });

  it('PEFT Trainer checkpoints: the highest step', async () => {
    const files = await Promise.all(
      ['hf_out/checkpoint-1000/adapter_model.safetensors', 'hf_out/checkpoint-500/adapter_model.safetensors'].map(
        recognized,
      ),
    );
    const pick = pickSource(files.map(versionedOf));
    assert.equal(pick.kind === 'picked' && pick.source, 'hf_out/checkpoint-1000');
    assert.equal(pick.kind === 'picked' && pick.by, 'step in its name');
  });

  it('kohya .pt saves without metadata: the unmarked final name wins over -000004', async () => {
    const a = await recognized('train/kohya_pt/pixel_style-000004.pt');
    const b = await recognized('train/kohya_pt/pixel_style.pt');
    const pick = pickSource([a, b].map(versionedOf));
    assert.equal(pick.kind === 'picked' && pick.source, 'train/kohya_pt/pixel_style.pt');
    assert.match(pick.kind === 'picked' ? pick.by : '', /final save/);
  });

  it('a PEFT adapter folder and the Trainer checkpoint inside it: the final adapter is the source', async () => {
    const files = await Promise.all(
      ['peft/pixel_lora/checkpoint-500/adapter_model.safetensors', 'peft/pixel_lora/adapter_model.safetensors'].map(
        recognized,
      ),
    );
    assert.deepEqual(files.map(versionedOf), [
      { file: 'peft/pixel_lora/checkpoint-500', version: { checkpointStep: 500 }, unmarkedName: false },
      { file: 'peft/pixel_lora', version: undefined, unmarkedName: true },
    ]);
    const pick = pickSource(files.map(versionedOf));
    assert.equal(pick.kind === 'picked' && pick.source, 'peft/pixel_lora');
    assert.deepEqual(pick.kind === 'picked' && pick.versions, ['peft/pixel_lora/checkpoint-500']);
  });

  it('no progress to order them → unordered (DUPLICATE_SOURCE), and ties say so', () => {
    const none = pickSource<string>([{ file: 'a/x.pt' }, { file: 'b/x.pt' }]);
    assert.deepEqual(none, {
      kind: 'unordered',
      why: 'no progress to order them (no steps, epochs or training times they all carry)',
      files: ['a/x.pt', 'b/x.pt'],
    });
    // two unmarked names: the final-save rule does not guess
    const two = pickSource<string>([
      { file: 'a/x.pt', unmarkedName: true },
      { file: 'b/x.pt', unmarkedName: true },
      { file: 'c/x-000002.pt', version: { nameEpoch: 2 } },
    ]);
    assert.equal(two.kind, 'unordered');
    const tie = pickSource<string>([
      { file: 'a', version: { steps: 600 } },
      { file: 'b', version: { steps: 600 } },
      { file: 'c', version: { steps: 100 } },
    ]);
    assert.deepEqual(tie, { kind: 'unordered', why: '2 files are equally far in training', files: ['a', 'b'] });
    // a tie on steps broken by the finish time
    const broken = pickSource<string>([
      { file: 'a', version: { steps: 600, finishedAt: 5 } },
      { file: 'b', version: { steps: 600, finishedAt: 7 } },
    ]);
    assert.equal(broken.kind === 'picked' && broken.source, 'b');
    assert.equal(pickSource([{ file: 'only' }]).kind, 'picked');
  });

  it('the message of a copy equal to an earlier version', async () => {
    const v8 = await recognized('train/kohya/pixel_style-000008.safetensors');
    const src = await recognized('train/kohya/pixel_style.safetensors');
    assert.equal(
      staleVersionMessage({ file: 'pixel_style-000008.safetensors', progress: v8.version }, { progress: src.version }),
      'stale: equal to epoch 8 (pixel_style-000008.safetensors); the source is at epoch 12',
    );
    assert.equal(
      staleVersionMessage({ file: 'checkpoint-500', progress: { checkpointStep: 500 } }, { progress: undefined }),
      'stale: equal to checkpoint-500 (checkpoint-500)',
    );
    assert.equal(
      staleVersionMessage(
        { file: 'peft/pixel_lora/checkpoint-500', progress: { checkpointStep: 500 } },
        { file: 'peft/pixel_lora', progress: undefined },
      ),
      'stale: equal to checkpoint-500 (peft/pixel_lora/checkpoint-500); the source is the final save (peft/pixel_lora)',
    );
  });
});

describe('layouts: two training runs with one ss_output_name', () => {
  it('are two LoRAs: ids carry the session, display names show the run only when needed', async () => {
    const run1 = await recognized('train/kohya/pixel_style.safetensors');
    const run2 = await recognized('train/kohya_run2/pixel_style.safetensors');
    const noMeta = await recognized('train/kohya_pt/pixel_style.pt');
    assert.equal(layoutLoraId(run1), 'name:pixel_style@1874263015');
    assert.equal(layoutLoraId(run2), 'name:pixel_style@290611437');
    assert.equal(layoutLoraId(noMeta), 'name:pixel_style');
    const both = displayNames([
      { id: layoutLoraId(run1), name: 'pixel_style', session: run1.session, startedAt: 1714557600.123456 },
      { id: layoutLoraId(run2), name: 'pixel_style', session: run2.session, startedAt: 1717236000.5 },
      { id: 'name:other', name: 'other' },
    ]);
    assert.deepEqual(Object.fromEntries(both), {
      'name:pixel_style@1874263015': 'pixel_style (run 2024-05-01 10:00)',
      'name:pixel_style@290611437': 'pixel_style (run 2024-06-01 10:00)',
      'name:other': 'other',
    });
    const alone = displayNames([{ id: layoutLoraId(run1), name: 'pixel_style', session: run1.session }]);
    assert.equal(alone.get(layoutLoraId(run1)), 'pixel_style');
    // started the same minute: the session tells them apart
    const sameMinute = displayNames([
      { id: 'a', name: 'p', session: '1111119999', startedAt: 60 },
      { id: 'b', name: 'p', session: '2222228888', startedAt: 61 },
    ]);
    assert.deepEqual([sameMinute.get('a'), sameMinute.get('b')], ['p (run 119999)', 'p (run 228888)']);
  });

  it('a copy is told apart by its session id, else by content', async () => {
    const runs = [
      { id: 'name:pixel_style@1874263015', name: 'pixel_style', session: '1874263015' },
      { id: 'name:pixel_style@290611437', name: 'pixel_style', session: '290611437' },
    ];
    const comfy = await recognized('ComfyUI/models/loras/pixel_style_v2.safetensors');
    assert.equal(runOfCopy(comfy, runs, []), 'name:pixel_style@1874263015');
    assert.equal(runOfCopy({ session: '42' }, runs, []), undefined);
    assert.equal(runOfCopy({}, runs, ['name:pixel_style@290611437']), 'name:pixel_style@290611437');
    assert.equal(
      runOfCopy(
        {},
        runs,
        runs.map((r) => r.id),
      ),
      undefined,
    );
    assert.equal(runOfCopy({}, runs, []), undefined);
  });
});
