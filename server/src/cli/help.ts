/** `lora-sync --help`, `lora-sync help COMMAND`, `lora-sync COMMAND --help`: from the option table. */
import { COMMANDS, type CommandSpec, type OptionSpec, optionsOf } from './options';

const optionLabel = (o: OptionSpec) =>
  `${o.short ? `-${o.short}, ` : '    '}--${o.name}${o.type === 'string' ? ` ${o.arg ?? 'VALUE'}` : ''}`;

export function commandHelp(c: CommandSpec): string {
  const opts = optionsOf(c);
  const width = Math.max(...opts.map((o) => optionLabel(o).length)) + 2;
  const lines = [
    `usage: lora-sync ${c.name}${c.usage ? ` ${c.usage}` : ''}`,
    '',
    wrap(c.description, 100),
    '',
    'options:',
  ];
  for (const o of opts)
    lines.push(`  ${optionLabel(o).padEnd(width)}${o.help}${o.default ? ` (default: ${o.default})` : ''}`);
  lines.push('', 'exit codes:');
  for (const [code, meaning] of c.exits) lines.push(`  ${code}  ${meaning}`);
  lines.push('', 'example:', `  ${c.example}`);
  return lines.join('\n');
}

export function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length)) + 2;
  return [
    'usage: lora-sync <command> [options]',
    '',
    'Keeps every copy of a LoRA adapter (.pt, .safetensors) in step with its source.',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    '',
    'options:',
    '  -h, --help     help (also: lora-sync help COMMAND, lora-sync COMMAND --help)',
    '  -V, --version  version, digest algorithm, and which hashers loaded',
    '',
    'exit codes: 0 consistent / done / sound, 1 problems found or a copy failed, 2 usage or fatal errors',
    "Colour follows NO_COLOR and FORCE_COLOR; progress shows on a terminal only. 'lora-sync help COMMAND' for more.",
  ].join('\n');
}

function wrap(text: string, width: number): string {
  const out: string[] = [];
  let line = '';
  for (const w of text.split(/\s+/)) {
    if (line && line.length + 1 + w.length > width) {
      out.push(line);
      line = w;
    } else line = line ? `${line} ${w}` : w;
  }
  if (line) out.push(line);
  return out.join('\n');
}
