#!/usr/bin/env node
/**
 * The `lora-sync` command line: a thin shell over the same code the language server uses. The
 * commands and their options are declared once in options.ts; this file dispatches.
 * Exit codes: 0 sound / done, 1 problems found, 2 usage or fatal errors.
 */
import '../io/gcTuning'; // first: this process's GC setting, before any other module runs
import { stat } from 'node:fs/promises';
import { inspectFile, formatInspect } from './inspect';
import { stringifyJson, type Json } from '../formats/pyValue';
import { runDemo } from './demo';
import { version } from '../../../package.json';
import { DIGEST_ALG } from '../formats/fingerprint';
import { hashBackend } from '../formats/hashBackend';
import { StateLinkError } from '../io/realDir';
import { CliUsageError, cmdHistory, cmdStats, cmdStatus, cmdSync, cmdVerify, cmdWatch } from './engineCommands';
import { COMMANDS, commandSpec, SHELLS } from './options';
import { formatOf, nearest, parseCommand } from './args';
import { commandHelp, mainHelp } from './help';
import { Progress, progressWanted } from './progress';
import { colourWanted, painter } from './colour';
import { completionScript } from './completion';
import { cmdInit } from './init';
import { Timings } from './timings';

/** Where to look after a usage error in the command line itself (not after, say, a bad lora-sync.json). */
let helpHint: string | undefined = "Run 'lora-sync --help' for the commands.";
/** --timings: printed once the command ends, however it ends (done, failed, interrupted). */
let timings: Timings | undefined;
function printTimings(): void {
  if (timings) process.stderr.write(`${timings.line()}\n`);
  timings = undefined; // once
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd) {
    process.stderr.write(`${mainHelp()}\n`);
    return 2;
  }
  if (cmd === '--help' || cmd === '-h') {
    process.stdout.write(`${mainHelp()}\n`);
    return 0;
  }
  if (cmd === '--version' || cmd === '-V') {
    process.stdout.write(`lora-sync ${version} (digests ${DIGEST_ALG}, hashing ${hashBackend().name})\n`);
    return 0;
  }
  const spec = commandSpec(cmd);
  if (!spec) {
    const near = nearest(
      cmd.replace(/^-+/, ''),
      COMMANDS.map((c) => c.name),
    );
    throw new CliUsageError(
      `${cmd.startsWith('-') ? 'unknown option' : 'unknown command'} '${cmd}'${near ? `; did you mean '${near}'?` : ''}`,
    );
  }
  helpHint = `Run 'lora-sync ${spec.name} --help' for its options.`;
  const { values: v, positionals } = parseCommand(spec, rest);
  if (v.help) {
    process.stdout.write(`${commandHelp(spec)}\n`);
    return 0;
  }
  const format = spec.options.some((o) => o.name === 'format') ? formatOf(v, cmd) : 'text';
  helpHint = undefined;
  // LORA_SYNC_PROGRESS_AFTER_MS: how long work runs before the line shows (500 ms; tests set 0).
  const after = Number(process.env.LORA_SYNC_PROGRESS_AFTER_MS ?? 500);
  const progress = new Progress(
    process.stderr,
    progressWanted(process.stderr, { quiet: !!v.quiet, format }),
    Number.isFinite(after) ? after : 500,
  );
  if (v.timings) timings = new Timings();
  // Ctrl-C during a scan: clear the progress line (and print --timings) before dying, so the prompt
  // comes back clean; then die of the signal itself, so a shell loop around us stops as it should.
  // (sync takes over once its copies start: stop between copies, then a second Ctrl-C quits.)
  const beforeQuit = () => {
    progress.clear();
    printTimings();
  };
  const onInt = () => {
    beforeQuit();
    // The handler is gone (once): the default action, death by SIGINT, delivered before kill returns.
    process.kill(process.pid, 'SIGINT');
    process.exit(130); // only if the signal was somehow not fatal
  };
  if ((progress.enabled || timings) && cmd !== 'watch') process.once('SIGINT', onInt);
  const common = {
    interrupt: { takeOver: () => process.off('SIGINT', onInt), beforeQuit },
    timings,
    root: v.root as string | undefined,
    format,
    json: format === 'json',
    progress,
    paint: painter(format === 'text' && colourWanted(process.stdout)),
  };
  switch (spec.name) {
    case 'help': {
      const about = positionals[0];
      if (!about) {
        process.stdout.write(`${mainHelp()}\n`);
        return 0;
      }
      const c = commandSpec(about);
      if (!c) {
        const near = nearest(
          about,
          COMMANDS.map((x) => x.name),
        );
        throw new CliUsageError(`no command '${about}'${near ? `; did you mean '${near}'?` : ''}`);
      }
      process.stdout.write(`${commandHelp(c)}\n`);
      return 0;
    }
    case 'inspect': {
      const file = positionals[0];
      const st = await stat(file).catch(() => undefined);
      if (!st) throw new CliUsageError(`${file}: no such file`);
      if (!st.isFile()) throw new CliUsageError(`${file}: not a regular file`);
      const r = await inspectFile(file);
      process.stdout.write(`${format === 'json' ? stringifyJson(r as unknown as Json, 2) : formatInspect(r)}\n`);
      return r.sound ? 0 : 1;
    }
    case 'status':
      return cmdStatus({ ...common, all: !!v.all });
    case 'verify':
      return cmdVerify({ ...common, lora: v.lora as string | undefined });
    case 'sync':
      return cmdSync({
        ...common,
        lora: v.lora as string | undefined,
        all: !!v.all,
        reason: v.reason as string | undefined,
        match: v.match as string | undefined,
        force: !!v.force,
        dryRun: !!v['dry-run'],
      });
    case 'history':
      return cmdHistory({ ...common, lora: v.lora as string | undefined, limit: v.limit as string | undefined });
    case 'stats':
      return cmdStats(common);
    case 'watch':
      return cmdWatch({ ...common, poll: !!v.poll });
    case 'init':
      return cmdInit({ root: common.root, yes: !!v.yes, force: !!v.force, paint: common.paint });
    case 'completion': {
      const shell = positionals[0];
      if (!(SHELLS as readonly string[]).includes(shell)) {
        const near = nearest(shell, SHELLS);
        throw new CliUsageError(
          `completion: no shell '${shell}' (bash, zsh or fish)${near ? `; did you mean '${near}'?` : ''}`,
        );
      }
      process.stdout.write(completionScript(shell as (typeof SHELLS)[number]));
      return 0;
    }
    case 'demo':
      return runDemo({ dir: v.dir as string | undefined });
  }
  throw new CliUsageError(`unknown command '${cmd}'`);
}

// A reader that stops early (`lora-sync status --json | head`) closes the pipe: stop quietly, as a
// process killed by SIGPIPE does (exit 141, unless the command's own code is already known), rather
// than an unhandled EPIPE stack trace. What was written stays written (every write is atomic); a
// long report is cut where the reader left (it is written as it is made), and --timings still says
// where the time went (on stderr).
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code !== 'EPIPE') throw e;
  printTimings();
  process.exit(process.exitCode ?? 141);
});

main(process.argv.slice(2)).then(
  (code) => {
    printTimings();
    process.exitCode = code;
  },
  (e) => {
    if (e instanceof CliUsageError) {
      // The error and where to look; not the whole usage text, which buries the one line that matters.
      process.stderr.write(`lora-sync: ${e.message}\n${helpHint ? `${helpHint}\n` : ''}`);
    } else if (e instanceof StateLinkError) {
      process.stderr.write(`lora-sync: ${e.message}\n`); // the workspace's doing, not ours: no stack
    } else {
      process.stderr.write(`lora-sync: internal error: ${(e as Error)?.stack ?? e}\n`);
    }
    printTimings(); // after the error (a scan that did not finish counts under "the command")
    process.exitCode = 2;
  },
);
