/**
 * The client's fence (client/tsconfig.json): client code may import server/src/protocol/ and
 * nothing else of the server. Checked with the real config, the real protocol folder and the real
 * tsc on a copy of the layout (the repository is never written to): an import of the protocol
 * passes, an import of an engine module fails, however it is spelled.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');

describe('client boundary (client/tsconfig.json)', function () {
  this.timeout(60_000);
  let dir: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'lora-fence-'));
    cpSync(join(ROOT, 'tsconfig.json'), join(dir, 'tsconfig.json'));
    cpSync(join(ROOT, 'client', 'tsconfig.json'), join(dir, 'client', 'tsconfig.json'));
    cpSync(join(ROOT, 'server', 'src', 'protocol'), join(dir, 'server', 'src', 'protocol'), { recursive: true });
    mkdirSync(join(dir, 'server', 'src', 'engine'), { recursive: true });
    writeFileSync(
      join(dir, 'server', 'src', 'engine', 'workspace.ts'),
      'export interface FileReport { path: string }\n',
    );
    symlinkSync(realpathSync(join(ROOT, 'node_modules')), join(dir, 'node_modules'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Type-checks the client project with these files as its sources; returns tsc's exit code and output. */
  function check(files: Record<string, string>): { code: number | null; out: string } {
    rmSync(join(dir, 'client', 'src'), { recursive: true, force: true });
    mkdirSync(join(dir, 'client', 'src'), { recursive: true });
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, 'client', 'src', name), text);
    const r = spawnSync(process.execPath, [TSC, '-p', 'client'], { cwd: dir, encoding: 'utf8' });
    return { code: r.status, out: r.stdout + r.stderr };
  }

  it('lets client code import the protocol folder', () => {
    const r = check({
      'ok.ts': [
        "import { CopyMapRequest } from '../../server/src/protocol/messages';",
        "import { STATUS_FACTS } from '../../server/src/protocol/statusTable';",
        'export const method = CopyMapRequest.method;',
        'export const icon = STATUS_FACTS.STALE.icon;',
        '',
      ].join('\n'),
    });
    assert.equal(r.code, 0, r.out);
  });

  const violations: Record<string, string> = {
    'an engine import':
      "import { FileReport } from '../../server/src/engine/workspace';\nexport type A = FileReport;\n",
    'a type-only import() of the engine': "export type B = import('../../server/src/engine/workspace').FileReport;\n",
    'an engine import spelled through the protocol folder':
      "import type { FileReport } from '../../server/src/protocol/../engine/workspace';\nexport type C = FileReport;\n",
  };
  for (const [what, text] of Object.entries(violations)) {
    it(`fails on ${what}`, () => {
      const r = check({ 'bad.ts': text });
      assert.notEqual(r.code, 0, 'tsc passed a client that imports the engine');
      assert.match(
        r.out,
        /client\/src\/bad\.ts\(\d+,\d+\): error TS6307: File '.*server\/src\/engine\/workspace\.ts'/,
        r.out,
      );
    });
  }
});
