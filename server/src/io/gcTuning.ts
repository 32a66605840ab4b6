/**
 * One V8 setting for the processes that hold an index (the CLI, the language server): allocation-site
 * pretenuring off. V8 watches, per place in the code that makes objects, how many of them outlive a
 * young-generation collection, and past 85 % makes that place's objects in the old generation at
 * once. A scan makes per-file objects that live for a few files and entries that live for the whole
 * run, at the same pace, so that decision fell one way or the other from run to run: a cold 100x
 * scan peaked at 245–255 MB when it fell one way and 300–318 MB when it fell the other (the old
 * generation then filled with objects that died there, about 60 MB more before its next collection).
 * Off, every run peaks at the lower figure, at the same speed (BENCHMARKS.md, session 13).
 *
 * Applied when this module is loaded: the entry points (cli/main.ts, lsp/server.ts) import it before
 * any other module, so no code runs before it. Flags are per process: the entry workers share it.
 */
import { setFlagsFromString } from 'node:v8';

export const GC_FLAGS = ['--no-allocation-site-pretenuring'] as const;

for (const f of GC_FLAGS) setFlagsFromString(f);
