/**
 * LoRA Sync in a real VS Code extension host, through the VS Code API only, on a copy of the
 * workspace written by real torch (test/fixtures/workspace: one file per status, expected statuses
 * in its expected.json). Files on disk are read back with the project's own reader.
 */
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import * as vscode from 'vscode';
import type { CopyMapResult, RescanResult, ServerStatus, SyncSummary } from '../../../server/src/protocol/messages';
import { withCheckpoint } from '../../../server/src/formats/checkpoint';
import { readTensorBytes } from '../../../server/src/formats/fingerprint';
import { getKey, mappingEntries } from '../../../server/src/formats/pickle/nodes';
import { typedForm, type Typed } from '../../../server/src/formats/pyValue';
import type { ItemSnapshot } from '../../../client/src/viewSnapshot';
import { activateAndWaitReady, codeOf, nfc, ourDiagnostics, root, waitFor } from './support';
import { walk } from '../../support/files';
import { trainerStep } from '../../../server/src/demo/trainerStep';

interface Expected {
  path: string;
  lora_id: string | null;
  lora_name?: string;
  role: string | null;
  expect: string;
  copy_keys?: Typed;
  source?: string;
  sync_blocked?: string;
  source_tensors?: Array<{ path: string; sha256: string }>;
}

const COPY_KEYS = ['team', 'specialization_key', 'score', 'match_count', 'exported_at'];
const NOT_PROBLEMS = new Set(['SOURCE', 'IN_SYNC', 'UNRECOGNIZED']);
/** The icon each status shows with in the Copy Map (client/src/icons.ts, checked independently here). */
const ICONS: Record<string, string> = {
  SOURCE: 'star-full',
  IN_SYNC: 'pass',
  STALE: 'sync',
  DIVERGED: 'git-compare',
  METADATA_DRIFT: 'info',
  PARAM_COUNT_MISMATCH: 'error',
  SHAPE_MISMATCH: 'error',
  DTYPE_MISMATCH: 'error',
  CORRUPT: 'file-binary',
  UNSAFE: 'shield',
  ORPHAN: 'question',
  DUPLICATE_SOURCE: 'copy',
};
const WARNINGS = new Set(['STALE', 'ORPHAN']);

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** NFC relative path → path on disk (one team folder is spelled in NFD on disk). */
async function diskPaths(): Promise<Map<string, string>> {
  const m = new Map<string, string>();
  for (const rel of await walk(root())) m.set(nfc(rel), join(root(), rel));
  return m;
}

async function tensorShas(file: string): Promise<Map<string, string>> {
  return withCheckpoint(file, async (c) => {
    const m = new Map<string, string>();
    for (const t of c.tensors) m.set(t.path.replace(/^lora_params\./, ''), sha(await readTensorBytes(c, t)));
    return m;
  });
}

async function copyKeysOf(file: string): Promise<Typed> {
  return withCheckpoint(file, async (c) => {
    const meta = getKey(c.root!, 'metadata')!;
    const pairs: Typed[] = [];
    for (const [k, v] of mappingEntries(meta)!)
      if (k.kind === 'str' && COPY_KEYS.includes(k.value)) pairs.push([typedForm(k), typedForm(v)] as unknown as Typed);
    return ['dict', pairs] as Typed;
  });
}

function findFile(tree: ItemSnapshot[], lora: string, file: string): ItemSnapshot | undefined {
  const node = tree.find((n) => n.label === lora);
  return node?.children?.find((c) => nfc(`${c.description ? `${c.description}/` : ''}${c.label}`) === file);
}

describe('LoRA Sync in the VS Code extension host', function () {
  this.timeout(120_000);
  let expected: Expected[];
  let problems: Expected[];
  let disk: Map<string, string>;
  let summary: SyncSummary | undefined;

  before(async () => {
    expected = JSON.parse(await readFile(join(root(), 'expected.json'), 'utf8')).files;
    problems = expected.filter((f) => !NOT_PROBLEMS.has(f.expect));
    disk = await diskPaths();
    assert.ok(problems.length >= 10, 'the fixture workspace has a file for each problem status');
  });

  it('activates and its server finishes the first scan', async () => {
    const status = await activateAndWaitReady();
    assert.equal(status.folders, 1);
    assert.equal(status.loras, new Set(expected.filter((f) => f.lora_name).map((f) => f.lora_name)).size);
    assert.equal(status.problems, problems.length);
  });

  it('"Rescan Workspace" answers with the scan of each folder, where its time went phase by phase', async () => {
    const r = (await vscode.commands.executeCommand('loraSync.rescan')) as RescanResult | undefined;
    assert.ok(r, "the command returned the server's result");
    const s = r.folders[0].summary;
    assert.equal(s.files, expected.length);
    assert.equal(s.read + s.reused, s.files);
    assert.ok(s.reused > 0, 'the first scan left the files known: a rescan reads only what changed');
    for (const p of ['list', 'keys', 'read', 'statuses', 'cache'] as const)
      assert.ok(Number.isFinite(s.timings?.[p]) && s.timings![p] >= 0, `${p}: ${JSON.stringify(s.timings)}`);
  });

  it('lists exactly the files that need attention in the Problems panel, with their status as the code', async () => {
    const diags = await waitFor('diagnostics for every problem file', () => {
      const d = ourDiagnostics();
      return d.size >= problems.length ? d : undefined;
    });
    assert.deepEqual([...diags.keys()].sort(), problems.map((f) => f.path).sort());
    for (const f of problems) {
      const d = diags.get(f.path)!;
      assert.equal(codeOf(d), f.expect, f.path);
      const severity =
        f.expect === 'METADATA_DRIFT'
          ? vscode.DiagnosticSeverity.Information
          : WARNINGS.has(f.expect)
            ? vscode.DiagnosticSeverity.Warning
            : vscode.DiagnosticSeverity.Error;
      assert.equal(d.severity, severity, `${f.path}: severity`);
      assert.ok(d.message.length > 10, `${f.path}: says what differs: "${d.message}"`);
      if (f.source) {
        const related = d.relatedInformation?.map((r) =>
          nfc(relative(root(), r.location.uri.fsPath).split(sep).join('/')),
        );
        assert.deepEqual(related, [f.source], `${f.path}: points to its source`);
      }
    }
    // What differs is named: a stale copy lists the tensors that differ from its source.
    const stale = diags.get('Manchester_United/🎯_WIN_EXPERTS/LoRA_A_4d5e6f.pt')!;
    assert.match(stale.message, /layers\.\d\.lora_[AB]/);
  });

  it('shows the copy map in the tree view: LoRA → source → copies, each with its status icon', async () => {
    const snap = await waitFor('the Copy Map view to fill', async () => {
      const s = await vscode.commands.executeCommand<{ copyMap: ItemSnapshot[] }>('loraSync.getViewSnapshot');
      return s.copyMap.length ? s : undefined;
    });
    const loras = new Map<string, Expected[]>();
    for (const f of expected) if (f.lora_name) loras.set(f.lora_name, [...(loras.get(f.lora_name) ?? []), f]);
    const loraItems = snap.copyMap.filter((n) => n.contextValue !== 'loraNotLoras');
    assert.deepEqual(loraItems.map((n) => n.label).sort(), [...loras.keys()].sort());
    // Files of no LoRA are listed last, apart, each with its "not a LoRA" icon.
    const notLoras = snap.copyMap[snap.copyMap.length - 1];
    assert.equal(notLoras.contextValue, 'loraNotLoras');
    assert.equal(notLoras.label, 'Not LoRA checkpoints');
    assert.deepEqual(
      notLoras.children
        ?.map((c) => nfc(`${c.description ? `${c.description.split(' · ').pop()}/` : ''}${c.label}`))
        .sort(),
      expected
        .filter((f) => f.expect === 'UNRECOGNIZED')
        .map((f) => f.path)
        .sort(),
    );
    for (const c of notLoras.children ?? []) assert.equal(c.icon, 'file', c.label);
    for (const [name, files] of loras) {
      const node = snap.copyMap.find((n) => n.label === name)!;
      const hasProblem = files.some((f) => !NOT_PROBLEMS.has(f.expect));
      assert.equal(node.icon, hasProblem ? 'warning' : 'pass', `${name}: LoRA icon`);
      assert.equal(node.children?.length, files.length, `${name}: one child per file`);
      // Sources come first.
      assert.ok(
        node.children![0].contextValue?.startsWith('loraFile.source') || !files.some((f) => f.role === 'source'),
        `${name}: source first`,
      );
      for (const f of files) {
        const item = findFile(snap.copyMap, name, f.path);
        assert.ok(item, `${name}: ${f.path} is in the tree`);
        assert.equal(item.icon, ICONS[f.expect], `${f.path}: icon`);
        if (f.expect === 'STALE') assert.equal(item.color, 'list.warningForeground', `${f.path}: colour`);
        if (f.expect === 'DIVERGED' || f.expect === 'CORRUPT')
          assert.equal(item.color, 'list.errorForeground', `${f.path}: colour`);
        assert.ok(item.contextValue?.endsWith(`.${f.expect}`), `${f.path}: contextValue ${item.contextValue}`);
      }
    }
    // The tree agrees with the copy map the server sent.
    const map = await vscode.commands.executeCommand<CopyMapResult>('loraSync.getCopyMap');
    const byPath = new Map(map.folders[0].files.map((f) => [nfc(f.path), f.status]));
    for (const f of expected) assert.equal(byPath.get(f.path), f.expect, f.path);
  });

  it('"Sync All" rewrites the stale copies on disk, keeps their own keys, and leaves the rest alone', async () => {
    const syncable = expected.filter((f) => f.expect === 'STALE' && !f.sync_blocked);
    const untouchable = expected.filter(
      (f) =>
        [
          'DIVERGED',
          'CORRUPT',
          'UNSAFE',
          'ORPHAN',
          'SHAPE_MISMATCH',
          'DTYPE_MISMATCH',
          'PARAM_COUNT_MISMATCH',
        ].includes(f.expect) || f.sync_blocked,
    );
    assert.ok(syncable.length >= 3 && untouchable.length >= 8);
    const before = new Map<string, string>();
    for (const f of untouchable) before.set(f.path, sha(await readFile(disk.get(f.path)!)));

    summary = await vscode.commands.executeCommand<SyncSummary>('loraSync.syncAll');
    assert.ok(summary, 'the command returns the server summary');
    assert.equal(summary.failed, 0);
    assert.equal(summary.cancelled, false);
    const outcomes = new Map(
      summary.folders.flatMap((fo) => fo.loras.flatMap((l) => l.copies.map((c) => [nfc(c.path), c.outcome] as const))),
    );
    for (const f of syncable) assert.equal(outcomes.get(f.path), 'synced', f.path);
    assert.ok(summary.synced >= syncable.length);

    for (const f of syncable) {
      const file = disk.get(f.path)!;
      const got = await tensorShas(file);
      assert.deepEqual(
        [...got.entries()].sort(),
        f.source_tensors!.map((t) => [t.path, t.sha256] as [string, string]).sort(),
        `${f.path}: tensors equal the source's`,
      );
      assert.deepEqual(await copyKeysOf(file), f.copy_keys, `${f.path}: its own keys kept`);
    }
    for (const f of untouchable)
      assert.equal(sha(await readFile(disk.get(f.path)!)), before.get(f.path), `${f.path}: not written`);
  });

  it('clears the stale diagnostics after the sync and keeps the diverged, corrupt, unsafe and orphaned ones', async () => {
    const synced = new Set(expected.filter((f) => f.expect === 'STALE' && !f.sync_blocked).map((f) => f.path));
    const diags = await waitFor('the synced copies to lose their diagnostics', () => {
      const d = ourDiagnostics();
      return [...synced].every((p) => !d.has(p)) ? d : undefined;
    });
    for (const f of problems) {
      if (synced.has(f.path) || f.expect === 'METADATA_DRIFT') continue;
      assert.equal(diags.has(f.path) && codeOf(diags.get(f.path)!), f.expect, `${f.path} still shows ${f.expect}`);
    }
    for (const code of ['DIVERGED', 'CORRUPT', 'UNSAFE', 'ORPHAN'])
      assert.ok(
        [...diags.values()].some((d) => codeOf(d) === code),
        `a ${code} diagnostic remains`,
      );
    const status = await waitFor('the status to be recounted', async () => {
      const s = await vscode.commands.executeCommand<ServerStatus>('loraSync.getServerStatus');
      return s.problems === diags.size ? s : undefined;
    });
    assert.ok(status.problems < problems.length);
  });

  it('shows the sync in the History view', async () => {
    await vscode.commands.executeCommand('loraSync.showHistory');
    const snap = await waitFor('the History view to list the sync', async () => {
      const s = await vscode.commands.executeCommand<{ history: ItemSnapshot[] }>('loraSync.getViewSnapshot');
      return s.history.some((h) => /^LoRA_A · FULL_SYNC$/.test(h.label)) ? s : undefined;
    });
    const a = snap.history.find((h) => h.label === 'LoRA_A · FULL_SYNC')!;
    const copiesOfA = summary!.folders[0].loras.find((l) => l.name === 'LoRA_A')!.copies;
    const syncedA = copiesOfA.filter((c) => c.outcome === 'synced').length;
    assert.ok(syncedA >= 1);
    assert.match(a.description ?? '', new RegExp(`\\b${syncedA} synced / 0 failed / ${copiesOfA.length} total$`));
    assert.equal(a.icon, 'sync');
  });

  it('updates a diagnostic when a file changes on disk, and clears it when the file is restored', async () => {
    const rel = 'İstanbul_Başakşehir/🎯_DRAW_EXPERTS/LoRA_H_a1b2c3.pt';
    assert.equal(expected.find((f) => f.path === rel)?.expect, 'IN_SYNC');
    const file = disk.get(rel)!;
    const good = await readFile(file);
    assert.equal(ourDiagnostics().has(rel), false);
    // Flip one byte inside the first tensor's data: the record's CRC no longer matches.
    const offset = await withCheckpoint(file, async (c) => c.tensors[0].storage.offset + 1);
    const bad = Buffer.from(good);
    bad[offset] ^= 0xff;
    await writeFile(file, bad);
    const d = await waitFor('a CORRUPT diagnostic on the changed file', () => {
      const x = ourDiagnostics().get(rel);
      return x && codeOf(x) === 'CORRUPT' ? x : undefined;
    });
    assert.match(d.message, /CRC|crc|checksum/i);
    await writeFile(file, good);
    await waitFor('the diagnostic to clear once the file is restored', () =>
      ourDiagnostics().has(rel) ? undefined : true,
    );
  });

  it('turns the copies STALE when a trainer rewrites their source, and a sync of that LoRA clears them', async () => {
    const source = '⭐_AKTIF_EN_IYILER/LoRA_H.pt';
    const copy = 'İstanbul_Başakşehir/🎯_DRAW_EXPERTS/LoRA_H_a1b2c3.pt';
    await trainerStep(disk.get(source)!, { match: 77 });
    const d = await waitFor('the copy of the rewritten source to turn STALE', () => {
      const x = ourDiagnostics().get(copy);
      return x && codeOf(x) === 'STALE' ? x : undefined;
    });
    assert.match(d.message, /differ from ⭐_AKTIF_EN_IYILER\/LoRA_H\.pt/);
    const result = await vscode.commands.executeCommand<SyncSummary>('loraSync.syncLora', 'LoRA_H');
    assert.equal(result?.synced, 1);
    await waitFor('the STALE diagnostic to clear', () => (ourDiagnostics().has(copy) ? undefined : true));
    const [src, cp] = await Promise.all([tensorShas(disk.get(source)!), tensorShas(disk.get(copy)!)]);
    assert.deepEqual([...cp.entries()], [...src.entries()]);
  });

  it('opens a checkpoint in the LoRA inspector, and "sync this copy" writes that copy only', async () => {
    const source = '⭐_AKTIF_EN_IYILER/LoRA_A.pt';
    const target = '💎_PERFECT_HYBRID_HALL/LoRA_A_1a2b3c.pt';
    const other = 'Manchester_United/🎯_WIN_EXPERTS/LoRA_A_4d5e6f.pt';
    await trainerStep(disk.get(source)!, { match: 78 });
    await waitFor('both copies of the retrained source to turn STALE', () => {
      const d = ourDiagnostics();
      return [target, other].every((p) => d.get(p) && codeOf(d.get(p)!) === 'STALE') ? true : undefined;
    });
    const otherBefore = sha(await readFile(disk.get(other)!));
    // A plain open lands in the inspector (it is the default editor of .pt files).
    await vscode.commands.executeCommand('vscode.open', vscode.Uri.file(disk.get(target)!));
    const tab = await waitFor('the inspector tab', () => {
      const input = vscode.window.tabGroups.activeTabGroup.activeTab?.input;
      return input instanceof vscode.TabInputCustom && input.viewType === 'loraSync.inspector' ? input : undefined;
    });
    assert.equal(nfc(tab.uri.fsPath), nfc(disk.get(target)!));
    // The inspector's "Sync this copy" button runs this command for the file of the active inspector.
    const result = await vscode.commands.executeCommand<SyncSummary>('loraSync.syncCopy');
    assert.equal(result?.synced, 1);
    const written = result!.folders.flatMap((f) =>
      f.loras.flatMap((l) => l.copies.filter((c) => c.outcome === 'synced').map((c) => nfc(c.path))),
    );
    assert.deepEqual(written, [target]);
    await waitFor('the synced copy to clear', () => (ourDiagnostics().has(target) ? undefined : true));
    assert.equal(codeOf(ourDiagnostics().get(other)!), 'STALE', 'the other copy is still stale');
    assert.equal(sha(await readFile(disk.get(other)!)), otherBefore, 'the other copy was not written');
    const [src, cp] = await Promise.all([tensorShas(disk.get(source)!), tensorShas(disk.get(target)!)]);
    assert.deepEqual([...cp.entries()], [...src.entries()]);
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
  });
  it('lora-sync.json is validated while edited, with the schema the engine uses (contributes.jsonValidation)', async () => {
    // In a subfolder: the server reads only the root's lora-sync.json, so the rest of the suite is unaffected.
    const file = join(root(), 'notes', 'lora-sync.json');
    await writeFile(file, '{\n  "sourceFolder": ["CENTRAL"],\n  "backups": "yes"\n}\n');
    const doc = await vscode.workspace.openTextDocument(vscode.Uri.file(file));
    await vscode.window.showTextDocument(doc);
    const diags = await waitFor('the JSON service to check lora-sync.json against the schema', () => {
      const d = vscode.languages.getDiagnostics(doc.uri);
      return d.length >= 2 ? d : undefined;
    });
    const lines = diags.map((d) => `${d.range.start.line}: ${d.message}`).sort();
    assert.match(lines[0], /^1: .*sourceFolder/, lines.join(' | '));
    assert.match(lines[1], /^2: .*(boolean|type)/i, lines.join(' | '));
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
  });
});
