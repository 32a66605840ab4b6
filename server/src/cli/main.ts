#!/usr/bin/env node
/**
 * The `lora-sync` command line: a thin shell over the same code the language server uses.
 * Exit codes: 0 sound / done, 1 problems found, 2 usage or fatal errors.
 */
import { parseArgs } from 'node:util';
import { stat } from 'node:fs/promises';
import { inspectFile, formatInspect } from './inspect';
import { stringifyJson, type Json } from '../formats/pyValue';
import { runDemo } from './demo';
import { version } from '../../../package.json';
import { DIGEST_ALG } from '../formats/fingerprint';
import { hashBackend } from '../formats/hashBackend';
import { StateLinkError } from '../io/realDir';
import { CliUsageError, cmdHistory, cmdStats, cmdStatus, cmdSync, cmdVerify, cmdWatch } from './engineCommands';

const USAGE = `usage: lora-sync <command> [options]

commands:
  status  [--root DIR] [--json] [--all]      every checkpoint's status (problems only, or --all)
  verify  [--root DIR] [--json] [--lora ID]  verify_sync_integrity for one LoRA or all
  sync    (--lora ID | --all) [--root DIR] [--reason R] [--match N] [--force] [--dry-run] [--json]
  history [--root DIR] [--json] [--lora ID] [--limit N]
  stats   [--root DIR] [--json]
  watch   [--root DIR] [--json] [--poll]      keep the index live, print status changes; auto-sync per lora-sync.json
  inspect FILE [--json]                      format, records, tensors, metadata, CRC and safety of one file
  demo    [--dir DIR]                        generate a seed-like workspace, then status, sync, verify
  --version                                  version, digest algorithm, and which hashers loaded (native or portable)

--root defaults to the current folder; --lora takes a LoRA id or name.
exit codes: 0 consistent / done / sound, 1 inconsistencies, failed copies, corrupt or unsafe, 2 usage or fatal errors`;

class UsageError extends CliUsageError {}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return cmd ? 0 : 2;
  }
  if (cmd === '--version' || cmd === '-V') {
    process.stdout.write(`lora-sync ${version} (digests ${DIGEST_ALG}, hashing ${hashBackend().name})\n`);
    return 0;
  }
  switch (cmd) {
    case 'inspect': {
      const { values, positionals } = parse(rest, { json: { type: 'boolean' } });
      if (positionals.length !== 1) throw new UsageError('inspect takes exactly one FILE');
      const file = positionals[0];
      const st = await stat(file).catch(() => undefined);
      if (!st) throw new UsageError(`${file}: no such file`);
      if (!st.isFile()) throw new UsageError(`${file}: not a regular file`);
      const r = await inspectFile(file);
      process.stdout.write(`${values.json ? stringifyJson(r as unknown as Json, 2) : formatInspect(r)}\n`);
      return r.sound ? 0 : 1;
    }
    case 'status': {
      const { values } = parse(
        rest,
        { root: { type: 'string' }, json: { type: 'boolean' }, all: { type: 'boolean' } },
        false,
      );
      return cmdStatus(values as never);
    }
    case 'verify': {
      const { values } = parse(
        rest,
        { root: { type: 'string' }, json: { type: 'boolean' }, lora: { type: 'string' } },
        false,
      );
      return cmdVerify(values as never);
    }
    case 'sync': {
      const { values } = parse(
        rest,
        {
          root: { type: 'string' },
          json: { type: 'boolean' },
          lora: { type: 'string' },
          all: { type: 'boolean' },
          reason: { type: 'string' },
          match: { type: 'string' },
          force: { type: 'boolean' },
          'dry-run': { type: 'boolean' },
        },
        false,
      );
      return cmdSync({ ...(values as Record<string, unknown>), dryRun: values['dry-run'] as boolean | undefined });
    }
    case 'history': {
      const { values } = parse(
        rest,
        { root: { type: 'string' }, json: { type: 'boolean' }, lora: { type: 'string' }, limit: { type: 'string' } },
        false,
      );
      return cmdHistory(values as never);
    }
    case 'stats': {
      const { values } = parse(rest, { root: { type: 'string' }, json: { type: 'boolean' } }, false);
      return cmdStats(values as never);
    }
    case 'watch': {
      const { values } = parse(
        rest,
        { root: { type: 'string' }, json: { type: 'boolean' }, poll: { type: 'boolean' } },
        false,
      );
      return cmdWatch(values as never);
    }
    case 'demo': {
      const { values } = parse(rest, { dir: { type: 'string' } });
      return runDemo({ dir: values.dir as string | undefined });
    }
    default:
      throw new UsageError(`unknown command '${cmd}'`);
  }
}

function parse(args: string[], options: Record<string, { type: 'boolean' | 'string' }>, positionals = true) {
  let r;
  try {
    r = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (!positionals && r.positionals.length) throw new UsageError(`unexpected argument '${r.positionals[0]}'`);
  return r;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    if (e instanceof CliUsageError) {
      process.stderr.write(`lora-sync: ${e.message}\n\n${USAGE}\n`);
    } else if (e instanceof StateLinkError) {
      process.stderr.write(`lora-sync: ${e.message}\n`); // the workspace's doing, not ours: no stack
    } else {
      process.stderr.write(`lora-sync: internal error: ${(e as Error)?.stack ?? e}\n`);
    }
    process.exitCode = 2;
  },
);
