/**
 * LoRA Sync in a real VS Code extension host on real LoRA layouts: a copy of test/fixtures/layouts
 * (kohya training output with epochs, the same LoRA in A1111 and ComfyUI folders, a PEFT adapter with
 * a Trainer checkpoint deployed to prod and staging, diffusers, files that are no LoRA) with a
 * lora-sync.json whose sourceFolders are the kohya output folder and the PEFT adapter's folder
 * (test/support/files.ts copyLayoutsWorkspace). Runs when runCodeServer.ts opens the host on that
 * workspace (LORA_SYNC_VSCODE_SUITE=layouts). Through the VS Code API only; files read back with the
 * project's reader.
 */
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import * as vscode from 'vscode';
import type { CopyMapResult, SyncSummary, UseFolderAsSourceResult } from '../../../server/src/protocol/messages';
import { withCheckpoint } from '../../../server/src/formats/checkpoint';
import { readTensorBytes } from '../../../server/src/formats/fingerprint';
import type { ItemSnapshot } from '../../../client/src/viewSnapshot';
import { activateAndWaitReady, codeOf, ourDiagnostics, root, waitFor } from './support';
import { LAYOUTS_SOURCE_FOLDERS } from '../../support/files';

const abs = (rel: string) => join(root(), ...rel.split('/'));
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

const KOHYA_SOURCE = 'train/kohya/pixel_style.safetensors';
const KOHYA_EPOCH8 = 'train/kohya/pixel_style-000008.safetensors';
const KOHYA_STEP500 = 'train/kohya/pixel_style-step00000500.safetensors';
const STALE_COPY = 'stable-diffusion-webui/models/Lora/pixel_style.safetensors';
const SIDE_FILE = 'stable-diffusion-webui/models/Lora/pixel_style.json';

interface Snapshot {
  copyMap: ItemSnapshot[];
  copyMapMessage?: string;
}
const snapshot = () => vscode.commands.executeCommand<Snapshot>('loraSync.getViewSnapshot');
const copyMap = () => vscode.commands.executeCommand<CopyMapResult>('loraSync.refresh');

/** The LoRA node one of whose rows (or version rows) is `label` with `description`. */
function loraWith(tree: ItemSnapshot[], label: string, description?: string): ItemSnapshot | undefined {
  const rows = (n: ItemSnapshot): ItemSnapshot[] => (n.children ?? []).flatMap((c) => [c, ...(c.children ?? [])]);
  return tree.find((n) =>
    rows(n).some((c) => c.label === label && (description === undefined || c.description === description)),
  );
}

async function tensorShas(file: string): Promise<Map<string, string>> {
  return withCheckpoint(file, async (c) => {
    const m = new Map<string, string>();
    for (const t of c.tensors) m.set(t.path, sha(await readTensorBytes(c, t)));
    return m;
  });
}

describe('LoRA Sync on real LoRA layouts (kohya, A1111, ComfyUI, PEFT, diffusers)', function () {
  this.timeout(120_000);

  it('activates and its server finishes the first scan of the layouts workspace', async () => {
    const status = await activateAndWaitReady();
    assert.equal(status.folders, 1);
    const map = await waitFor('the copy map', async () => {
      const m = await copyMap();
      return m?.folders[0]?.files.length ? m : undefined;
    });
    assert.ok(map.folders[0].files.some((f) => f.path === KOHYA_SOURCE));
  });

  it('offers "Use Folder as Source" on Explorer folders and in the palette, and refuses the workspace folder itself and files', async () => {
    const pkg = vscode.extensions.getExtension('lora-sync.lora-sync')!.packageJSON as {
      contributes: { menus: Record<string, Array<{ command: string; when?: string }>> };
    };
    const explorer = pkg.contributes.menus['explorer/context'].find((m) => m.command === 'loraSync.useFolderAsSource');
    assert.ok(explorer?.when?.includes('explorerResourceIsFolder'), 'on folders in the Explorer');
    assert.ok((await vscode.commands.getCommands(true)).includes('loraSync.useFolderAsSource'));
    const before = await readFile(abs('lora-sync.json'), 'utf8');
    const r = await vscode.commands.executeCommand<UseFolderAsSourceResult | undefined>(
      'loraSync.useFolderAsSource',
      vscode.workspace.workspaceFolders![0].uri,
    );
    assert.equal(r, undefined, 'the workspace folder itself is no source folder');
    const onFile = await vscode.commands.executeCommand<UseFolderAsSourceResult | undefined>(
      'loraSync.useFolderAsSource',
      vscode.Uri.file(abs(KOHYA_SOURCE)),
    );
    assert.equal(onFile, undefined, 'a file is no folder');
    assert.equal(await readFile(abs('lora-sync.json'), 'utf8'), before, 'lora-sync.json unchanged');
  });

  it('shows a PEFT adapter as one unit named by its folder, its Trainer checkpoint under Versions, then its deployed copies', async () => {
    const tree = await waitFor('the PEFT adapter in the Copy Map', async () => {
      const s = await snapshot();
      return loraWith(s.copyMap, 'peft/pixel_lora') ? s.copyMap : undefined;
    });
    const lora = loraWith(tree, 'peft/pixel_lora')!;
    assert.equal(lora.label, 'pixel_lora');
    const rows = lora.children!;
    assert.deepEqual(
      rows.map((r) => r.label),
      ['peft/pixel_lora', 'Versions (1)', 'deploy/prod/pixel_lora', 'deploy/staging/pixel_lora'],
    );
    assert.equal(rows[0].icon, 'star-full');
    assert.ok(rows[0].contextValue?.startsWith('loraFile.source.SOURCE'), rows[0].contextValue);
    assert.equal(rows[1].icon, 'history');
    const [version] = rows[1].children!;
    assert.equal(version.label, 'peft/pixel_lora/checkpoint-500');
    assert.equal(version.description, 'checkpoint-500');
    assert.equal(version.icon, 'history');
    assert.ok(version.contextValue?.endsWith('.VERSION'), version.contextValue);
    // One row per unit: the weights file inside is not a row of its own.
    assert.ok(!rows.some((r) => /adapter_model\./.test(r.label)));
    const map = await copyMap();
    const prod = map!.folders[0].files.find((f) => f.path === 'deploy/prod/pixel_lora/adapter_model.safetensors');
    assert.deepEqual(prod?.unit, { kind: 'folder', path: 'deploy/prod/pixel_lora' });
    assert.equal(prod?.layout, 'peft');
  });

  it("lists the kohya run's earlier saves under its source as versions, with no diagnostic", async () => {
    const tree = (await snapshot()).copyMap;
    const lora = loraWith(tree, 'pixel_style.safetensors', 'epoch 12 · train/kohya');
    assert.ok(lora, 'the kohya source shows with its version label');
    const rows = lora.children!;
    assert.equal(rows[0].label, 'pixel_style.safetensors');
    assert.equal(rows[0].description, 'epoch 12 · train/kohya');
    assert.equal(rows[1].label, 'Versions (2)');
    assert.deepEqual(
      rows[1].children!.map((v) => [v.label, v.description, v.icon]),
      [
        ['pixel_style-step00000500.safetensors', 'step 500 · train/kohya', 'history'],
        ['pixel_style-000008.safetensors', 'epoch 8 · train/kohya', 'history'],
      ],
    );
    const diags = ourDiagnostics();
    for (const v of [KOHYA_SOURCE, KOHYA_EPOCH8, KOHYA_STEP500]) assert.equal(diags.has(v), false, `${v}: sound`);
  });

  it("shows a file's ecosystem hashes in its tooltip once hovered (AutoV2, AutoV3, as A1111 and Civitai show them)", async () => {
    const before = (await snapshot()).copyMap;
    const plain = loraWith(before, 'pixel_style.safetensors', 'epoch 12 · train/kohya')!.children![0];
    assert.ok(plain.tooltip && !plain.tooltip.includes('AutoV2'), 'not computed before the row is hovered');
    const hovered = await vscode.commands.executeCommand<Snapshot>('loraSync.getViewSnapshot', { resolve: true });
    const row = loraWith(hovered.copyMap, 'pixel_style.safetensors', 'epoch 12 · train/kohya')!.children![0];
    // Computed here independently: SHA-256 of the whole file, and of the bytes after the safetensors header.
    const bytes = await readFile(abs(KOHYA_SOURCE));
    const dataStart = 8 + Number(bytes.readBigUInt64LE(0));
    const autoV2 = sha(bytes).slice(0, 10).toUpperCase();
    const autoV3 = sha(bytes.subarray(dataStart)).slice(0, 12).toUpperCase();
    assert.ok(row.tooltip?.includes(`AutoV2 \`${autoV2}\``), row.tooltip);
    assert.ok(row.tooltip?.includes(`AutoV3 \`${autoV3}\``), row.tooltip);
  });

  it('shows the stale A1111 copy in the Problems panel: equal to epoch 8, the source further on', async () => {
    const d = await waitFor('a STALE diagnostic on the A1111 copy', () => {
      const x = ourDiagnostics().get(STALE_COPY);
      return x && codeOf(x) === 'STALE' ? x : undefined;
    });
    assert.match(
      d.message,
      /stale: equal to epoch 8 \(pixel_style-000008\.safetensors\); the source is at epoch \d+/,
      d.message,
    );
    assert.equal(d.severity, vscode.DiagnosticSeverity.Warning);
    const related = d.relatedInformation?.map((r) => relative(root(), r.location.uri.fsPath).split(sep).join('/'));
    assert.deepEqual(related, [KOHYA_SOURCE], 'points to its source');
  });

  it('lists the files that are no LoRA apart, each with why', async () => {
    const tree = (await snapshot()).copyMap;
    const others = tree.find((n) => n.contextValue === 'loraNotLoras');
    assert.ok(others, 'a "Not LoRA checkpoints" node');
    const byLabel = new Map(others.children!.map((c) => [`${c.description?.split(' · ').pop()}/${c.label}`, c]));
    assert.match(byLabel.get('other/model.safetensors')?.description ?? '', /^no LoRA tensor names · other$/);
    assert.match(byLabel.get('hf_out/checkpoint-500/optimizer.pt')?.description ?? '', /^optimizer state · /);
    assert.match(byLabel.get('peft/ia3_adapter/adapter_model.safetensors')?.description ?? '', /IA3/);
  });

  it('"Sync All" brings the stale copy to the source, its diagnostic clears, versions and side files untouched', async () => {
    const untouched = [KOHYA_SOURCE, KOHYA_EPOCH8, KOHYA_STEP500, SIDE_FILE];
    const before = new Map<string, string>();
    for (const f of untouched) before.set(f, sha(await readFile(abs(f))));
    const summary = await vscode.commands.executeCommand<SyncSummary>('loraSync.syncAll');
    assert.ok(summary, 'the command returns the server summary');
    assert.equal(summary.failed, 0);
    const outcome = summary.folders
      .flatMap((f) => f.loras.flatMap((l) => l.copies))
      .find((c) => c.path === STALE_COPY)?.outcome;
    assert.equal(outcome, 'synced');
    const [src, copy] = await Promise.all([tensorShas(abs(KOHYA_SOURCE)), tensorShas(abs(STALE_COPY))]);
    assert.deepEqual([...copy.entries()].sort(), [...src.entries()].sort(), "the copy holds the source's tensors");
    await waitFor('the stale diagnostic to clear', () => (ourDiagnostics().has(STALE_COPY) ? undefined : true));
    for (const f of untouched) assert.equal(sha(await readFile(abs(f))), before.get(f), `${f}: not written`);
    const map = await copyMap();
    assert.equal(map!.folders[0].files.find((f) => f.path === STALE_COPY)?.status, 'IN_SYNC');
  });

  it('"Use Folder as Source" on a folder adds it to lora-sync.json, and its checkpoints become source and version', async () => {
    const r = await vscode.commands.executeCommand<UseFolderAsSourceResult | undefined>(
      'loraSync.useFolderAsSource',
      vscode.Uri.file(abs('hf_out')),
    );
    assert.ok(r, 'the command returns the server result');
    assert.equal(r.added.replace(/\/+$/, ''), 'hf_out');
    for (const s of LAYOUTS_SOURCE_FOLDERS) assert.ok(r.sourceFolders.includes(s), `${s} kept`);
    assert.ok(
      r.sourceFolders.some((s) => s.replace(/\/+$/, '') === 'hf_out'),
      `hf_out added: ${r.sourceFolders.join(', ')}`,
    );
    const written = JSON.parse(await readFile(abs('lora-sync.json'), 'utf8')) as {
      sourceFolders: string[];
      include: string[];
    };
    assert.deepEqual(written.sourceFolders, r.sourceFolders, 'the file says what the command reported');
    assert.ok(written.include.includes('**/*.bin'), 'the other keys are kept');
    const status = (m: CopyMapResult | undefined, p: string) => m?.folders[0].files.find((f) => f.path === p)?.status;
    await waitFor('the Trainer checkpoints to become source and version', async () => {
      const m = await copyMap();
      return status(m, 'hf_out/checkpoint-1000/adapter_model.safetensors') === 'SOURCE' &&
        status(m, 'hf_out/checkpoint-500/adapter_model.safetensors') === 'VERSION'
        ? true
        : undefined;
    });
  });

  it("shows the server's hint in the Copy Map when no source folder exists, and drops it when one does", async () => {
    const config = abs('lora-sync.json');
    const original = await readFile(config, 'utf8');
    try {
      await writeFile(config, JSON.stringify({ ...JSON.parse(original), sourceFolders: ['no/such/folder'] }, null, 2));
      const hint = await waitFor('a hint on the folder', async () => (await copyMap())?.folders[0].hint);
      assert.match(hint, /source folder/i);
      const s = await waitFor('the Copy Map to show it', async () => {
        const x = await snapshot();
        return x.copyMapMessage === hint ? x : undefined;
      });
      assert.equal(s.copyMapMessage, hint);
    } finally {
      await writeFile(config, original);
    }
    await waitFor('the hint to go once a source folder exists', async () =>
      (await copyMap())?.folders[0].hint === undefined && (await snapshot()).copyMapMessage === undefined
        ? true
        : undefined,
    );
  });
});
