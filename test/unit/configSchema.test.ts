/**
 * One schema for lora-sync.json (schemas/lora-sync.schema.json): VS Code validates the file with it
 * (contributes.jsonValidation), the engine with the validator generated from it. The same cases go
 * through a plain JSON Schema validator (as the editor would check them), through mergeConfig, and
 * through the built CLI; they must agree, and the engine's messages must stay specific.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Ajv from 'ajv';
import { ConfigError, DEFAULT_CONFIG, mergeConfig } from '../../server/src/engine/config';
import { SETTING_KEYS } from '../../server/src/protocol/messages';

const ROOT = join(__dirname, '..', '..');
const SCHEMA = JSON.parse(readFileSync(join(ROOT, 'schemas', 'lora-sync.schema.json'), 'utf8'));
const CLI = join(ROOT, 'dist', 'cli.js');

// Accepted and rejected configs: [case, config, the words the engine's message must contain]
const GOOD: unknown[] = [
  {},
  { sourceFolders: ['CENTRAL'], copyKeys: ['team'], backups: false },
  { include: ['**/*.safetensors'], exclude: [], autoSync: 'onSourceChange' },
  { fullSyncEvery: 10, debounceMs: 0, settleMs: 2500, reconcileSeconds: 0 },
  { $schema: './schemas/lora-sync.schema.json', ignoreKeys: [] },
  { settleMs: 1.0 }, // JSON's 1.0 is the integer 1
];
const BAD: Array<[unknown, RegExp]> = [
  [{ sourceFolder: ['x'] }, /unknown option "sourceFolder" \(known: include, exclude, sourceFolders, /],
  [{ copyKeys: 'team' }, /"copyKeys" must be a list of strings/],
  [{ include: ['a', 3] }, /"include" must be a list of strings/],
  [{ backups: 'yes' }, /"backups" must be true or false/],
  [{ autoSync: 'always' }, /"autoSync" must be "off" or "onSourceChange"/],
  [{ fullSyncEvery: -1 }, /"fullSyncEvery" must be a whole number ≥ 0/],
  [{ debounceMs: 1.5 }, /"debounceMs" must be a whole number ≥ 0/],
  [{ settleMs: '1000' }, /"settleMs" must be a whole number ≥ 0/],
  [{ sourceFolders: [''] }, /"sourceFolders" entries must not be empty/],
  [['include'], /expected an object/],
  ['text', /expected an object/],
  [{ $schema: 5 }, /"\$schema" must be a string/],
];

describe('lora-sync.json: one schema for the editor and the engine', () => {
  const editor = new Ajv({ strict: false }).compile(SCHEMA); // as VS Code reads it: annotations ignored

  it('the engine and a plain JSON Schema validator accept and reject the same configs', () => {
    for (const c of GOOD) {
      assert.ok(editor(c), `schema rejects ${JSON.stringify(c)}: ${JSON.stringify(editor.errors)}`);
      mergeConfig(DEFAULT_CONFIG, c, 'lora-sync.json');
    }
    for (const [c, msg] of BAD) {
      assert.equal(editor(c), false, `schema accepts ${JSON.stringify(c)}`);
      assert.throws(
        () => mergeConfig(DEFAULT_CONFIG, c, 'lora-sync.json'),
        (e: Error) => e instanceof ConfigError && msg.test(e.message) && e.message.startsWith('lora-sync.json: '),
        `engine on ${JSON.stringify(c)}`,
      );
    }
  });

  it('the built CLI (the generated validator in the bundle) agrees: exit 2 with the same message', function () {
    this.timeout(30_000);
    const dir = mkdtempSync(join(tmpdir(), 'lora-cfg-cli-'));
    try {
      for (const [c, msg] of BAD.slice(0, 5)) {
        writeFileSync(join(dir, 'lora-sync.json'), JSON.stringify(c));
        const r = spawnSync(process.execPath, [CLI, 'stats', '--root', dir], { encoding: 'utf8' });
        assert.equal(r.status, 2, JSON.stringify(c));
        assert.match(r.stderr, msg);
      }
      writeFileSync(join(dir, 'lora-sync.json'), JSON.stringify(GOOD[2]));
      assert.equal(spawnSync(process.execPath, [CLI, 'stats', '--root', dir]).status, 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('several mistakes are reported together; values are NFC and merged over the base', () => {
    assert.throws(
      () => mergeConfig(DEFAULT_CONFIG, { backups: 1, typo: true }, 'settings'),
      /^ConfigError: settings: .*unknown option "typo".*; "backups" must be true or false|^ConfigError: settings: "backups" must be true or false; unknown option "typo"/,
    );
    const c = mergeConfig(DEFAULT_CONFIG, { sourceFolders: ['Bes\u0327iktas\u0327'] }, 'x');
    assert.deepEqual(c.sourceFolders, ['Beşiktaş'.normalize('NFC')]);
    assert.deepEqual(c.copyKeys, DEFAULT_CONFIG.copyKeys);
  });

  it('keys and defaults agree: schema, DEFAULT_CONFIG, the loraSync.* settings of package.json', () => {
    const props = SCHEMA.properties as Record<
      string,
      { default?: unknown; type?: string; enum?: string[]; minimum?: number }
    >;
    assert.deepEqual(
      Object.keys(props).filter((k) => k !== '$schema'),
      [...SETTING_KEYS],
    );
    const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
    const settings = manifest.contributes.configuration.properties;
    for (const k of SETTING_KEYS) {
      assert.deepEqual(props[k].default, DEFAULT_CONFIG[k], `default of ${k}`);
      const s = settings[`loraSync.${k}`];
      assert.deepEqual(s.default, props[k].default, `loraSync.${k} default`);
      assert.equal(s.type, props[k].type, `loraSync.${k} type`);
      assert.deepEqual(s.enum, props[k].enum, `loraSync.${k} enum`);
      assert.equal(s.minimum, props[k].minimum, `loraSync.${k} minimum`);
    }
    assert.deepEqual(manifest.contributes.jsonValidation, [
      { fileMatch: 'lora-sync.json', url: './schemas/lora-sync.schema.json' },
    ]);
  });

  it('the generated validator is the one the schema gives (npm run build regenerates it)', async () => {
    const { generate, OUT } = await import('../../scripts/configValidator.mjs');
    assert.equal(readFileSync(join(ROOT, OUT), 'utf8'), generate());
  });
});
