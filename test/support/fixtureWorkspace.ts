/** The torch-written fixture workspace (test/fixtures/workspace) as the engine sees it, and what its expected.json says. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Workspace } from '../../server/src/engine/workspace';
import { copyFixtureWorkspace } from './files';

/** One file of expected.json (the fields the pure-module suites read). */
export interface ExpectedFile {
  path: string;
  role: 'source' | 'copy' | null;
  expect: string;
  lora_id: string | null;
  /** Why a sync of its LoRA is blocked (DUPLICATE_SOURCE, SOURCE_UNSAFE). */
  sync_blocked?: string;
}

export const expectedFiles: ExpectedFile[] = JSON.parse(
  readFileSync(join(__dirname, '..', 'fixtures', 'workspace', 'expected.json'), 'utf8'),
).files;

/** A fresh copy of the fixture workspace, opened and scanned. */
export async function scannedFixtureWorkspace(prefix: string): Promise<{ dir: string; ws: Workspace }> {
  const dir = await copyFixtureWorkspace(prefix);
  const ws = await Workspace.open(dir);
  await ws.scan();
  return { dir, ws };
}
