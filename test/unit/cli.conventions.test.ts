/**
 * The command-line conventions people expect (issue 14), on the built CLI (dist/cli.js) as a child
 * process: help and exit codes, suggestions, progress on a terminal only, NO_COLOR / FORCE_COLOR,
 * SARIF validated against the SARIF 2.1.0 schema, the output schemas, `init`, shell completion, and
 * Ctrl-C during a sync. Terminals are real pseudo-terminals made by util-linux `script`.
 */
import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
  copyFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import Ajv2020 from 'ajv/dist/2020';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import { COMMANDS, optionsOf } from '../../server/src/cli/options';
import { cliColorOf, isProblem, sarifLevel, STATUSES, STATUS_FACTS } from '../../server/src/protocol/statusTable';
import { OUTPUT_SCHEMAS } from '../../server/src/cli/outputSchemas';
import { Progress } from '../../server/src/cli/progress';
import { Timings } from '../../server/src/cli/timings';
import { thousands } from '../../server/src/protocol/thousands';

const ROOT = join(__dirname, '..', '..');
const CLI = join(ROOT, 'dist', 'cli.js');
const FIX = join(ROOT, 'test', 'fixtures', 'workspace');
const HAS_SCRIPT = spawnSync('script', ['--version']).status === 0;

/** The environment of a user who set nothing about colour or progress. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of ['NO_COLOR', 'FORCE_COLOR', 'LORA_SYNC_PROGRESS_AFTER_MS', 'LORA_SYNC_FAULTS']) delete env[k];
  return { ...env, TERM: 'xterm-256color', ...extra };
}

function run(args: string[], extra: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: cleanEnv(extra) });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Runs the CLI on a pseudo-terminal (stdout and stderr both the terminal, merged as a user sees them). */
function onTerminal(args: string[], extra: Record<string, string> = {}, redirect = '', typed?: string) {
  const cmd = `${shq(process.execPath)} ${shq(CLI)} ${args.map(shq).join(' ')} ${redirect}`;
  // `typed`: what the user types at the terminal (script passes its stdin to the terminal).
  const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8', env: cleanEnv(extra), input: typed });
  return { code: r.status, out: r.stdout };
}

const ESC = '\x1b[';

/** A validator's verdict as a plain boolean (not a type guard: the value keeps its JSON type). */
const passes = (v: (x: unknown) => boolean, x: unknown): boolean => v(x);
const ANSI = /\x1b\[[0-9;]*m/;

describe('lora-sync command-line conventions (issue 14)', function () {
  this.timeout(60_000);
  let ws: string;
  before(() => {
    if (!existsSync(CLI)) throw new Error('dist/cli.js is missing: run `npm run build` (npm test does)');
    ws = mkdtempSync(join(tmpdir(), 'lora-cli-'));
    cpSync(FIX, ws, { recursive: true });
  });
  after(() => rmSync(ws, { recursive: true, force: true }));

  describe('help', () => {
    it('--help, -h, help, help COMMAND and COMMAND --help print usage on stdout and exit 0', () => {
      for (const args of [['--help'], ['-h'], ['help']]) {
        const r = run(args);
        assert.equal(r.code, 0, args.join(' '));
        assert.match(r.out, /^usage: lora-sync <command>/);
        for (const c of COMMANDS) assert.match(r.out, new RegExp(`^  ${c.name} `, 'm'));
      }
      for (const c of COMMANDS) {
        const a = run([c.name, '--help']);
        assert.equal(a.code, 0, `${c.name} --help: ${a.err}`);
        // (one process per command is slow enough: `help COMMAND` is compared on a few)
        if (['status', 'sync', 'init'].includes(c.name)) assert.deepEqual(run(['help', c.name]), a);
        assert.match(a.out, new RegExp(`^usage: lora-sync ${c.name}`));
        // every option of the table, with its default, the exit codes and an example
        for (const o of optionsOf(c)) {
          assert.ok(a.out.includes(`--${o.name}`), `${c.name} --help lacks --${o.name}`);
          if (o.default) assert.ok(a.out.includes(`(default: ${o.default})`), `${c.name} --${o.name} default`);
        }
        assert.match(a.out, /\nexit codes:\n {2}0 {2}/);
        assert.match(a.out, /\nexample:\n {2}\S/);
      }
    });

    it('no command: the overview on stderr and exit 2', () => {
      const r = run([]);
      assert.equal(r.code, 2);
      assert.match(r.err, /^usage: lora-sync/);
    });

    it('an unknown option exits 2 and suggests the nearest; so does an unknown command', () => {
      const cases: Array<[string[], RegExp]> = [
        [['sync', '--all', '--dryrun'], /unknown option '--dryrun'; did you mean --dry-run\?/],
        [['sync', '--dry_run'], /did you mean --dry-run\?/],
        [['status', '--fromat', 'json'], /did you mean --format\?/],
        [['status', '--al'], /did you mean --all\?/],
        [['sync', '-dry-run'], /unknown option '-dry-run'; did you mean --dry-run\?/],
        [['status', '-x'], /unknown option '-x'\nRun 'lora-sync status --help' for its options/],
        [['stauts'], /unknown command 'stauts'; did you mean 'status'\?/],
        [['verfy'], /did you mean 'verify'\?/],
        [['help', 'snyc'], /no command 'snyc'; did you mean 'sync'\?/],
        [['status', '--format', 'sarf'], /--format takes text, json, sarif, not 'sarf'; did you mean sarif\?/],
        [['completion', 'bsh'], /did you mean 'bash'\?/],
      ];
      for (const [args, msg] of cases) {
        const r = run(args);
        assert.equal(r.code, 2, args.join(' '));
        assert.match(r.err, msg, args.join(' '));
      }
      const far = run(['status', '--zzzzzzzz']);
      assert.equal(far.code, 2);
      assert.doesNotMatch(far.err, /did you mean/);
      assert.match(far.err, /lora-sync status --help/);
    });

    it('--json is the short form of --format json, and the two must agree', () => {
      const a = run(['status', '--root', ws, '--json']);
      const b = run(['status', '--root', ws, '--format', 'json']);
      assert.equal(a.code, 1);
      assert.deepEqual(JSON.parse(a.out), JSON.parse(b.out));
      const c = run(['status', '--root', ws, '--json', '--format', 'sarif']);
      assert.equal(c.code, 2);
      assert.match(c.err, /--json and --format sarif disagree/);
      assert.equal(run(['sync', '--all', '--root', ws, '--format', 'sarif']).code, 2, 'sync has no SARIF');
    });
  });

  describe('colour', () => {
    it('on a terminal, each status in its colour from the status table; not in a pipe', function () {
      if (!HAS_SCRIPT) this.skip();
      const t = onTerminal(['status', '--root', ws]);
      assert.equal(t.code, 1);
      const codes = { red: 31, yellow: 33, green: 32, cyan: 36, blue: 34, magenta: 35, dim: 2 } as const;
      for (const s of ['STALE', 'DIVERGED', 'UNSAFE', 'METADATA_DRIFT', 'ORPHAN'] as const) {
        const c = cliColorOf(s)!;
        assert.ok(t.out.includes(`${ESC}${codes[c]}m${STATUS_FACTS[s].cliIcon} ${s}`), `${s} in ${c}`);
      }
      assert.doesNotMatch(run(['status', '--root', ws]).out, ANSI);
    });

    it('NO_COLOR (non-empty) turns it off on a terminal; FORCE_COLOR forces it in a pipe; FORCE_COLOR=0 is off', function () {
      if (!HAS_SCRIPT) this.skip();
      assert.doesNotMatch(onTerminal(['status', '--root', ws], { NO_COLOR: '1' }).out, ANSI);
      assert.match(onTerminal(['status', '--root', ws], { NO_COLOR: '' }).out, ANSI, 'empty NO_COLOR is unset');
      assert.doesNotMatch(onTerminal(['status', '--root', ws], { FORCE_COLOR: '0' }).out, ANSI);
      assert.match(run(['status', '--root', ws], { FORCE_COLOR: '1' }).out, ANSI);
      assert.match(run(['status', '--root', ws], { FORCE_COLOR: '1', NO_COLOR: '1' }).out, ANSI, 'FORCE_COLOR wins');
      assert.doesNotMatch(run(['status', '--root', ws], { TERM: 'dumb' }).out, ANSI);
    });

    it('JSON and SARIF are never coloured, even when forced', () => {
      for (const f of ['json', 'sarif']) {
        const r = run(['status', '--root', ws, '--format', f], { FORCE_COLOR: '3' });
        assert.doesNotMatch(r.out, ANSI);
        JSON.parse(r.out);
      }
    });
  });

  describe('progress', () => {
    // The line shows after 500 ms of work; the fixture scans faster, so the tests lower the delay.
    const NOW = { LORA_SYNC_PROGRESS_AFTER_MS: '0' };

    it('on a terminal: a progress line on stderr with counts, cleared before the report', function () {
      if (!HAS_SCRIPT) this.skip();
      const cold = mkdtempSync(join(tmpdir(), 'lora-cli-cold-'));
      try {
        cpSync(FIX, cold, { recursive: true });
        const t = onTerminal(['status', '--root', cold], NOW, '>/dev/null');
        assert.match(t.out, /\r\x1b\[Klisting files/);
        assert.match(t.out, /\r\x1b\[Kreading {2}\d+\/28 files {2}\d+%/);
        assert.ok(t.out.endsWith('\r\x1b[K'), `cleared at the end: ${JSON.stringify(t.out.slice(-40))}`);
      } finally {
        rmSync(cold, { recursive: true, force: true });
      }
    });

    it('never in a pipe, with --json, --format sarif or --quiet; and not for a run shorter than half a second', function () {
      const piped = run(['status', '--root', ws], NOW);
      assert.equal(piped.err, '');
      if (!HAS_SCRIPT) this.skip();
      for (const extra of [['--json'], ['--format', 'sarif'], ['--quiet'], ['-q']]) {
        const t = onTerminal(['status', '--root', ws, ...extra], NOW);
        assert.doesNotMatch(t.out, /\x1b\[K|listing files|reading/, extra.join(' '));
      }
      // default delay: a warm scan of 28 files is done long before 500 ms
      assert.doesNotMatch(onTerminal(['status', '--root', ws], {}, '>/dev/null').out, /\x1b\[K/);
    });

    it('the line: files done / total, percent, rate and time left; nothing drawn when disabled', () => {
      const written: string[] = [];
      const sink = { columns: 120, write: (x: string) => written.push(x) };
      const p = new Progress(sink, true, 0);
      // The phase starts exactly at t0 (a clock tick between reading t0 and start() made it 3,001 files/s).
      const t0 = Date.now();
      const realNow = Date.now;
      Date.now = () => t0;
      try {
        p.start('reading', 60_000);
      } finally {
        Date.now = realNow;
      }
      p.update(15_000);
      assert.equal(p.line(t0 + 5_000), 'reading  15,000/60,000 files  25%  3,000 files/s  15 s left');
      assert.equal(p.line(t0 + 50), 'reading  15,000/60,000 files  25%', 'no rate before it means anything');
      p.update(30_000);
      assert.match(p.line(t0 + 120_000), /250 files\/s {2}2 min 0 s left$/);
      p.clear();
      assert.ok(written.length >= 2 && written.every((w) => w.startsWith('\r\x1b[K')));
      assert.equal(written.at(-1), '\r\x1b[K');
      const off: string[] = [];
      const q = new Progress({ write: (x: string) => off.push(x) }, false, 0);
      q.start('reading', 10);
      q.update(5);
      q.clear();
      assert.deepEqual(off, []);
    });

    it('sync shows its own phase on a terminal', function () {
      if (!HAS_SCRIPT) this.skip();
      const w = mkdtempSync(join(tmpdir(), 'lora-cli-sync-'));
      try {
        cpSync(FIX, w, { recursive: true });
        const t = onTerminal(['sync', '--all', '--root', w], NOW);
        assert.match(t.out, /\r\x1b\[Ksyncing {2}\d+\/4 files/);
        assert.match(t.out, /4 synced(\x1b\[39m)?, 0 failed/);
      } finally {
        rmSync(w, { recursive: true, force: true });
      }
    });
  });

  describe('--timings', () => {
    it('thousands writes numbers as toLocaleString("en-US") does', () => {
      const values = [0, 7, 999, 1000, 1001, 12_345, 999_999, 1_000_000, 60_571, 123_456_789, 2 ** 53 - 1];
      for (const v of [...values, ...values.map((x) => -x), 1234.4, 1234.5, 999.5, -0.4, 0.5, 1e21, NaN, Infinity]) {
        assert.equal(thousands(v), Math.round(v).toLocaleString('en-US'), String(v));
      }
    });

    const LINE =
      /^timings \(wall ms\): start-up ([\d,]+), list ([\d,]+), keys ([\d,]+), read ([\d,]+) \(([\d,]+) of ([\d,]+) files\), statuses ([\d,]+), cache ([\d,]+), the command ([\d,]+); total ([\d,]+); peak RSS ([\d,]+) MB$/m;
    const num = (x: string) => Number(x.replace(/,/g, ''));

    it('one line on stderr when the command is done: start-up, each scan phase, the command, the total; stdout unchanged', () => {
      const cold = mkdtempSync(join(tmpdir(), 'lora-cli-timings-'));
      try {
        cpSync(FIX, cold, { recursive: true });
        // Written an hour ago: a file written just before a scan is read again by the next one (racily clean).
        const past = new Date(Date.now() - 3_600_000);
        for (const f of readdirSync(cold, { recursive: true, withFileTypes: true }))
          if (f.isFile()) utimesSync(join(f.parentPath ?? f.path, f.name), past, past);
        const first = run(['status', '--json', '--timings', '--root', cold]);
        const m = LINE.exec(first.err);
        assert.ok(m, first.err);
        const once = (err: string) => assert.equal((err.match(/^timings \(wall ms\)/gm) ?? []).length, 1, err);
        once(first.err);
        const [startUp, list, keys, read, nRead, nFiles, statuses, cache, rest, total, peak] = m.slice(1, 12).map(num);
        assert.ok(read > 0 && list > 0 && startUp > 0, `a cold scan takes time to list and read: ${first.err}`);
        // A Node process holds tens of MB before it does anything; a figure far off means a wrong unit.
        assert.ok(peak >= 20 && peak < 4096, `peak RSS in MB: ${first.err}`);
        assert.equal(nFiles, JSON.parse(first.out).files.length, 'the files the scan indexed');
        assert.equal(nRead, nFiles, 'a cold scan reads every file');
        // The parts are the total, each rounded on its own.
        const parts = startUp + list + keys + read + statuses + cache + rest;
        assert.ok(Math.abs(parts - total) <= 4, `${parts} against ${total}`);
        const warm = run(['status', '--json', '--timings', '--root', cold]);
        assert.match(warm.err, /read \d+ \(0 of \d+ files\)/, 'a warm scan reads nothing');
        assert.deepEqual(JSON.parse(warm.out).summary, JSON.parse(first.out).summary);
        for (const args of [['verify'], ['sync', '--all', '--dry-run'], ['stats']]) {
          const r = run([...args, '--timings', '--root', cold]);
          assert.match(r.err, LINE, args.join(' '));
          once(r.err);
        }
        assert.equal(run(['history', '--timings', '--root', cold]).code, 2, 'history does not scan: no --timings');
        // A command that fails after its scan still says where the time went, after its error.
        const failed = run(['verify', '--lora', 'no-such-lora', '--timings', '--root', cold]);
        assert.equal(failed.code, 2, failed.err);
        assert.match(failed.err, /^lora-sync: .*no-such-lora[\s\S]*\ntimings \(wall ms\): .*read [\d,]+ \(0 of /m);
        once(failed.err);
      } finally {
        rmSync(cold, { recursive: true, force: true });
      }
    });

    it('every scan a command runs adds up; the command is what is left of the total', () => {
      const t = new Timings(100);
      const phases = { list: 10, keys: 5, read: 50, statuses: 5, cache: 10 };
      t.scanned({ files: 28, read: 28, reused: 0, removed: 0, changes: [], timings: phases });
      assert.equal(
        t.line(300, 61.4),
        'timings (wall ms): start-up 100, list 10, keys 5, read 50 (28 of 28 files), statuses 5, cache 10, the command 120; total 300; peak RSS 61 MB',
      );
      t.scanned({ files: 28, read: 4, reused: 24, removed: 0, changes: [], timings: phases });
      assert.equal(
        t.line(2_400, 1_234.5),
        'timings (wall ms): start-up 100, list 20, keys 10, read 100 (32 of 56 files), statuses 10, cache 20, the command 2,140; total 2,400; peak RSS 1,235 MB',
      );
    });
  });

  describe('SARIF', () => {
    const ajv = new Ajv2020({ allErrors: true, strict: false });
    addFormats(ajv);
    const validate = ajv.compile(JSON.parse(readFileSync(join(ROOT, 'test', 'schemas', 'sarif-2.1.0.json'), 'utf8')));

    it('status --format sarif is valid SARIF 2.1.0 with one result per problem file, its rule, level and source', () => {
      const r = run(['status', '--root', ws, '--format', 'sarif']);
      assert.equal(r.code, 1, r.err);
      const log = JSON.parse(r.out);
      assert.ok(passes(validate, log), JSON.stringify(validate.errors, null, 1));
      const status = JSON.parse(run(['status', '--root', ws, '--json']).out);
      const run0 = log.runs[0];
      const rules = run0.tool.driver.rules as Array<{
        id: string;
        help: { text: string };
        defaultConfiguration: { level: string };
      }>;
      for (const rule of rules) {
        assert.ok(rule.help.text.startsWith(STATUS_FACTS[rule.id as 'STALE'].explanation), rule.id);
        assert.equal(rule.defaultConfiguration.level, sarifLevel(rule.id as 'STALE'));
      }
      const problems = status.files.filter((f: { status: 'STALE' }) => isProblem(f.status));
      assert.ok(problems.length >= 15);
      assert.equal(run0.results.length, problems.length);
      const base = new URL(run0.originalUriBaseIds['%SRCROOT%'].uri);
      assert.equal(base.href, `${pathToFileURL(ws).href}/`);
      for (const f of problems) {
        const res = run0.results.find(
          (x: { locations: Array<{ physicalLocation: { artifactLocation: { uri: string } } }> }) =>
            decodeURIComponent(new URL(x.locations[0].physicalLocation.artifactLocation.uri, base).pathname) ===
            `${new URL(base).pathname}${f.path}`.normalize('NFC'),
        );
        assert.ok(res, `no result for ${f.path}`);
        assert.equal(res.ruleId, f.status);
        assert.equal(rules[res.ruleIndex].id, f.status);
        assert.equal(res.level, sarifLevel(f.status));
        assert.equal(res.message.text, f.message);
        assert.equal(res.locations[0].physicalLocation.artifactLocation.uriBaseId, '%SRCROOT%');
        const lora = status.loras.find((l: { id: string }) => l.id === f.lora_id);
        if (lora?.source && lora.source !== f.path)
          assert.equal(
            decodeURIComponent(res.relatedLocations[0].physicalLocation.artifactLocation.uri),
            lora.source,
            `${f.path}: related location = its source`,
          );
      }
      // what the schema catches: the test would fail on a wrong level
      run0.results[0].level = 'fatal';
      assert.equal(passes(validate, log), false);
    });

    it('verify --format sarif is valid SARIF too, restricted to the LoRA verified', () => {
      const all = run(['verify', '--root', ws, '--format', 'sarif']);
      assert.equal(all.code, 1);
      const log = JSON.parse(all.out);
      assert.ok(passes(validate, log), JSON.stringify(validate.errors, null, 1));
      const one = JSON.parse(run(['verify', '--root', ws, '--format', 'sarif', '--lora', 'lora_a']).out);
      assert.ok(passes(validate, one));
      assert.ok(one.runs[0].results.length > 0 && one.runs[0].results.length < log.runs[0].results.length);
      for (const r of one.runs[0].results) assert.equal(r.properties.lora_id, 'lora_a');
    });
  });

  describe('output schemas (docs/schemas)', () => {
    const ajv = new Ajv({ allErrors: true, strict: true });
    const published = (name: string) => JSON.parse(readFileSync(join(ROOT, 'docs', 'schemas', name), 'utf8'));

    it('the published schemas are what the status table gives (run `npm run schemas` after changing it)', () => {
      for (const [name, build] of Object.entries(OUTPUT_SCHEMAS)) assert.deepEqual(published(name), build(), name);
      assert.deepEqual(published('status.schema.json').properties.files.items.properties.status.enum, [
        ...STATUSES,
        'UNRECOGNIZED',
      ]);
    });

    it('status --json and verify --json validate; a new field is allowed, a missing or unknown status is not', () => {
      const vs = ajv.compile(published('status.schema.json'));
      const vv = ajv.compile(published('verify.schema.json'));
      const s = JSON.parse(run(['status', '--root', ws, '--json', '--all']).out);
      assert.ok(passes(vs, s), JSON.stringify(vs.errors));
      assert.ok(passes(vv, JSON.parse(run(['verify', '--root', ws, '--json']).out)), JSON.stringify(vv.errors));
      s.files[0].identified_by = 'metadata.id'; // fields may be added (docs/cli.md)
      s.files[0].issues.push({ type: 'TRAILING_DATA', file: s.files[0].path, detail: 'x' });
      assert.ok(passes(vs, s), JSON.stringify(vs.errors));
      s.files[0].status = 'NOT_A_STATUS';
      assert.equal(passes(vs, s), false);
      s.files[0].status = 'STALE';
      delete s.files[0].message;
      assert.equal(passes(vs, s), false);
    });
  });

  describe('init', () => {
    let dir: string;
    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), 'lora-cli-init-'));
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    it('on the fixture workspace: proposes the AKTIF_EN_IYILER source folder and the seed layout, writes only on --yes', () => {
      cpSync(FIX, dir, { recursive: true });
      const show = run(['init', '--root', dir]);
      assert.equal(show.code, 0, show.err);
      assert.match(show.out, /⭐_AKTIF_EN_IYILER {2}\(its name contains AKTIF_EN_IYILER\)/);
      assert.match(show.out, /layouts: seed \d+/);
      assert.match(show.out, /not written/);
      assert.equal(existsSync(join(dir, 'lora-sync.json')), false, 'no prompt without a terminal, no write');
      const w = run(['init', '--root', dir, '--yes']);
      assert.equal(w.code, 0, w.err);
      const cfg = JSON.parse(readFileSync(join(dir, 'lora-sync.json'), 'utf8'));
      assert.deepEqual(cfg.sourceFolders, ['AKTIF_EN_IYILER']);
      // what it wrote is a config the engine accepts
      assert.equal(run(['status', '--root', dir]).code, 1);
      // never replaced without --force
      writeFileSync(join(dir, 'lora-sync.json'), '{"backups": false}\n');
      const again = run(['init', '--root', dir, '--yes']);
      assert.equal(again.code, 1);
      assert.match(again.out, /exists already: not replaced \(use --force/);
      assert.equal(readFileSync(join(dir, 'lora-sync.json'), 'utf8'), '{"backups": false}\n');
      assert.equal(run(['init', '--root', dir, '--yes', '--force']).code, 0);
      assert.deepEqual(JSON.parse(readFileSync(join(dir, 'lora-sync.json'), 'utf8')).sourceFolders, [
        'AKTIF_EN_IYILER',
      ]);
    });

    it('without AKTIF_EN_IYILER: training outputs (several versions of one LoRA, checkpoint-N folders)', () => {
      cpSync(join(ROOT, 'test', 'fixtures', 'layouts'), dir, { recursive: true });
      const r = run(['init', '--root', dir, '--yes']);
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /train\/kohya {2}\(2 saved versions of pixel_style\)/);
      assert.match(r.out, /peft\/pixel_lora {2}\(it holds checkpoint-N folders/);
      assert.match(r.out, /layouts: .*kohya \d+/);
      const cfg = JSON.parse(readFileSync(join(dir, 'lora-sync.json'), 'utf8'));
      // By path where a name would also take in other folders (deploy/prod/pixel_lora, train/kohya_run2).
      assert.deepEqual(cfg.sourceFolders, ['hf_out', 'peft/pixel_lora', 'train/kohya']);
      // What it wrote makes no deployed copy a source: each LoRA keeps one source, no DUPLICATE_SOURCE.
      const st = JSON.parse(run(['status', '--root', dir, '--all', '--json']).out) as {
        files: Array<{ path: string; status: string }>;
      };
      assert.ok(!st.files.some((f) => f.status === 'DUPLICATE_SOURCE'), JSON.stringify(st.files));
      assert.equal(
        st.files.find((f) => f.path === 'deploy/prod/pixel_lora/adapter_model.safetensors')?.status,
        'IN_SYNC',
      );
    });

    it('the prompt on a terminal: "n" writes nothing, "y" writes', function () {
      if (!HAS_SCRIPT) this.skip();
      cpSync(FIX, dir, { recursive: true });
      const no = onTerminal(['init', '--root', dir], {}, '', 'n\n');
      assert.match(no.out, /lora-sync\.json\? \[y\/N\]/);
      assert.match(no.out, /not written/);
      assert.equal(existsSync(join(dir, 'lora-sync.json')), false);
      const yes = onTerminal(['init', '--root', dir], {}, '', 'y\n');
      assert.match(yes.out, /wrote /);
      assert.deepEqual(JSON.parse(readFileSync(join(dir, 'lora-sync.json'), 'utf8')).sourceFolders, [
        'AKTIF_EN_IYILER',
      ]);
    });
  });

  describe('completion', () => {
    const bash = (script: string) => spawnSync('bash', ['-c', script], { encoding: 'utf8' });
    const complete = (words: string[]) => {
      const r = bash(
        `source <(${shq(process.execPath)} ${shq(CLI)} completion bash) && COMP_WORDS=(${words.map(shq).join(' ')}) && COMP_CWORD=${words.length - 1} && _lora_sync && printf '%s\\n' "\${COMPREPLY[@]}"`,
      );
      assert.equal(r.status, 0, r.stderr);
      return r.stdout.split('\n').filter(Boolean);
    };

    it('bash: the script loads and registers; it completes commands, options and values from the table', () => {
      const r = bash(`source <(${shq(process.execPath)} ${shq(CLI)} completion bash) && complete -p lora-sync`);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /complete .*-F _lora_sync lora-sync/);
      assert.deepEqual(complete(['lora-sync', 'sta']).sort(), ['stats', 'status']);
      assert.deepEqual(complete(['lora-sync', 'sync', '--dr']), ['--dry-run']);
      assert.deepEqual(complete(['lora-sync', 'status', '--format', '']), ['text', 'json', 'sarif']);
      assert.deepEqual(complete(['lora-sync', 'completion', '']), ['bash', 'zsh', 'fish']);
      assert.deepEqual(complete(['lora-sync', 'help', 'ver']), ['verify']);
      assert.ok(complete(['lora-sync', 'init', '--']).includes('--yes'));
    });

    for (const shell of ['zsh', 'fish'] as const)
      it(`${shell}: the script parses`, function () {
        if (spawnSync(shell, ['--version']).status !== 0) this.skip(); // not installed here
        const file = join(tmpdir(), `lora-sync-completion.${shell}`);
        writeFileSync(file, run(['completion', shell]).out);
        const r = spawnSync(shell, shell === 'zsh' ? ['-n', file] : ['--no-execute', file], { encoding: 'utf8' });
        assert.equal(r.status, 0, r.stderr);
      });

    it('fish: completes commands, options and --format values', function () {
      if (spawnSync('fish', ['--version']).status !== 0) this.skip(); // not installed here
      const file = join(tmpdir(), 'lora-sync-completion-test.fish');
      writeFileSync(file, run(['completion', 'fish']).out);
      const ask = (line: string) =>
        spawnSync('fish', ['-c', `source ${shq(file)}; complete -C ${shq(line)}`], { encoding: 'utf8' })
          .stdout.split('\n')
          .filter(Boolean)
          .map((l) => l.split('\t')[0]);
      assert.deepEqual(ask('lora-sync sta').sort(), ['stats', 'status']);
      assert.deepEqual(ask('lora-sync sync --dr'), ['--dry-run']);
      assert.deepEqual(ask('lora-sync status --format ').sort(), ['json', 'sarif', 'text']);
    });

    it('zsh: completes an option in a real interactive zsh (zpty)', function () {
      if (spawnSync('zsh', ['--version']).status !== 0) this.skip(); // not installed here
      const file = join(tmpdir(), '_lora-sync-test');
      writeFileSync(file, run(['completion', 'zsh']).out);
      // An interactive zsh on a pseudo-terminal: compinit, the script, then TAB after `--dr`. Each step
      // waits for what it needs to see (no fixed sleeps: a loaded machine made those too short). The
      // marker is typed as RE""ADY so the echo of the typed line cannot match it.
      const driver = [
        'zmodload zsh/zpty',
        "zpty z 'zsh -f -i'",
        `zpty -w z 'PS1=">"; autoload -U compinit; compinit -u; source ${file}; function lora-sync { }; print RE""ADY'`,
        "zpty -r z ready '*READY*'",
        "zpty -w -n z $'lora-sync sync --dr\\t'",
        "zpty -r z out '*--dry-run*'",
        'print -r -- "$out"',
        'zpty -d z',
      ].join('\n');
      const r = spawnSync('zsh', ['-f', '-c', driver], { encoding: 'utf8', timeout: 20_000 });
      assert.match(r.stdout, /lora-sync sync --dry-run/, r.stdout.slice(-400));
    });

    it('zsh and fish scripts name every command and option of the table', () => {
      for (const shell of ['zsh', 'fish']) {
        const s = run(['completion', shell]).out;
        for (const c of COMMANDS) {
          assert.ok(s.includes(c.name), `${shell}: ${c.name}`);
          for (const o of optionsOf(c))
            assert.ok(
              shell === 'zsh' ? s.includes(`--${o.name}`) : s.includes(`-l ${o.name}`),
              `${shell}: --${o.name}`,
            );
        }
      }
    });
  });

  describe('Ctrl-C during a sync', () => {
    /** A workspace with one source and N stale copies of it. */
    function manyStale(n: number): string {
      const dir = mkdtempSync(join(tmpdir(), 'lora-cli-int-'));
      mkdirSync(join(dir, '⭐_AKTIF_EN_IYILER'));
      copyFileSync(join(FIX, '⭐_AKTIF_EN_IYILER', 'LoRA_A.pt'), join(dir, '⭐_AKTIF_EN_IYILER', 'LoRA_A.pt'));
      const stale = join(FIX, 'Manchester_United', '🎯_WIN_EXPERTS', 'LoRA_A_4d5e6f.pt');
      for (let i = 0; i < n; i++) {
        const d = join(dir, `team_${String(i).padStart(3, '0')}`);
        mkdirSync(d);
        copyFileSync(stale, join(d, `LoRA_A_${(0xa00000 + i).toString(16)}.pt`));
      }
      return dir;
    }

    /**
     * Starts a sync and presses Ctrl-C once its first copy is written (the fault seam's trace names
     * each write), and again, if `twice`, once it says it is stopping.
     */
    function interruptedSync(dir: string, twice: boolean, more: string[] = []) {
      return new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
        const child = spawn(process.execPath, [CLI, 'sync', '--lora', 'lora_a', ...more, '--root', dir], {
          env: cleanEnv({ LORA_SYNC_FAULTS: 'trace' }),
        });
        let out = '';
        let err = '';
        let presses = 0;
        child.stdout.on('data', (d) => (out += d));
        child.stderr.on('data', (d) => {
          err += d;
          if (presses === 0 && /write:done \S*team_\d+/.test(err)) {
            presses++;
            child.kill('SIGINT');
          }
          if (twice && presses === 1 && /stopping after the copies in flight/.test(err)) {
            presses++;
            child.kill('SIGINT');
          }
        });
        child.on('exit', (code) => resolve({ code, out, err }));
      });
    }

    it('the first Ctrl-C stops between copies and says what was and was not written', async () => {
      const dir = manyStale(150);
      try {
        const r = await interruptedSync(dir, false);
        assert.equal(r.code, 1, r.err.slice(-500));
        const m = /^cancelled: (\d+) synced, 0 failed, (\d+) skipped/.exec(r.out);
        assert.ok(m, r.out.slice(0, 300));
        const synced = Number(m[1]);
        assert.ok(synced >= 1 && synced < 150, `stopped early: ${synced}`);
        assert.match(r.out, new RegExp(`written before Ctrl-C: ${synced}; not written: ${150 - synced}`));
        assert.equal((r.out.match(/^ {2}synced {3}/gm) ?? []).length, synced, 'each written copy named');
        assert.match(r.err, /stopping after the copies in flight/);
        // what the summary says is what the disk holds
        const s = JSON.parse(run(['status', '--root', dir, '--json']).out);
        assert.equal(s.stats.by_status.IN_SYNC, synced);
        assert.equal(s.stats.by_status.STALE, 150 - synced);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    /**
     * Runs a command and presses Ctrl-C at the fault point `at` (`POINT~TEXT`): the process sends
     * itself SIGINT there (the seam's `int@` rule), so the press lands at that step however loaded the
     * machine is (pressing it on reading a trace line let the process run past the step).
     */
    function interruptAt(args: string[], at: string) {
      return new Promise<{ code: number | null; signal: string | null; err: string }>((resolve) => {
        const child = spawn(process.execPath, [CLI, ...args], { env: cleanEnv({ LORA_SYNC_FAULTS: `int@${at}` }) });
        let err = '';
        // A child that outlives its Ctrl-C is the failure to report (with its stderr), not a test timeout.
        const watchdog = setTimeout(() => {
          err += '\n(test: still running after 60 s, killed)';
          child.kill('SIGKILL');
        }, 60_000);
        child.stderr.on('data', (d) => (err += d));
        // 'close', not 'exit': the last of stderr (the --timings line) has been read by then.
        child.on('close', (code, signal) => {
          clearTimeout(watchdog);
          resolve({ code, signal, err });
        });
      });
    }
    const timingsLines = (err: string) => (err.match(/^timings \(wall ms\): /gm) ?? []).length;

    it('--timings on Ctrl-C: one line, then death by the signal (during a scan) or exit 130 (a second Ctrl-C in a sync)', async () => {
      const dir = manyStale(150);
      try {
        // The scan's last step writes the cache: Ctrl-C there, before sync has a handler of its own.
        const scanning = await interruptAt(
          ['sync', '--lora', 'lora_a', '--timings', '--root', dir],
          'write:create~index.jsonl',
        );
        assert.match(scanning.err, /lora-sync fault: int \d+ write:create \S*index\.jsonl/);
        assert.equal(scanning.signal, 'SIGINT', scanning.err.slice(-400));
        assert.equal(timingsLines(scanning.err), 1, scanning.err.slice(-400));
        const verify = await interruptAt(['verify', '--timings', '--root', dir], 'write:create~index.jsonl');
        assert.equal(verify.signal, 'SIGINT', verify.err.slice(-400));
        assert.equal(timingsLines(verify.err), 1, verify.err.slice(-400));
        const r = await interruptedSync(dir, true, ['--timings']);
        assert.equal(r.code, 130, r.err.slice(-400));
        assert.match(r.err, /interrupted again, quitting now\ntimings \(wall ms\): /);
        assert.equal(timingsLines(r.err), 1);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('a second Ctrl-C quits at once (exit 130)', async () => {
      const dir = manyStale(150);
      try {
        const r = await interruptedSync(dir, true);
        assert.equal(r.code, 130, r.out.slice(0, 300));
        assert.match(r.err, /interrupted again, quitting now/);
        assert.doesNotMatch(r.out, /synced, \d+ failed/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
