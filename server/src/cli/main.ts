#!/usr/bin/env node
/**
 * The `lora-sync` command line: a thin shell over the same code the language server uses.
 * Exit codes: 0 sound / done, 1 problems found, 2 usage or fatal errors.
 */
import { parseArgs } from 'node:util';
import { stat } from 'node:fs/promises';
import { inspectFile, formatInspect } from './inspect';
import { stringifyJson, Json } from '../formats/pyValue';
import { runDemo } from './demo';

const USAGE = `usage: lora-sync <command> [options]

commands:
  inspect FILE [--json]    format, records, tensors, metadata, CRC and safety of one checkpoint
  demo [--dir DIR]         generate a seed-like workspace and inspect it

exit codes: 0 sound, 1 corrupt or unsafe, 2 usage errors`;

class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(USAGE + '\n');
    return cmd ? 0 : 2;
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
      process.stdout.write((values.json ? stringifyJson(r as unknown as Json, 2) : formatInspect(r)) + '\n');
      return r.sound ? 0 : 1;
    }
    case 'demo': {
      const { values } = parse(rest, { dir: { type: 'string' } });
      return runDemo({ dir: values.dir as string | undefined });
    }
    default:
      throw new UsageError(`unknown command '${cmd}'`);
  }
}

function parse(args: string[], options: Record<string, { type: 'boolean' | 'string' }>) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (e) => {
    if (e instanceof UsageError) {
      process.stderr.write(`lora-sync: ${e.message}\n\n${USAGE}\n`);
    } else {
      process.stderr.write(`lora-sync: internal error: ${(e as Error)?.stack ?? e}\n`);
    }
    process.exitCode = 2;
  },
);
