/**
 * One V8 setting for the processes that hold an index (the CLI, the language server): allocation-site
 * pretenuring off. V8 watches, per place in the code that makes objects, how many of them outlive a
 * young-generation collection, and past 85 % makes that place's objects in the old generation at
 * once. A scan makes per-file objects that live for a few files and entries that live for the whole
 * run, at the same pace, so that decision went differently from run to run: a cold 100x scan peaked
 * anywhere from 245 to 318 MB (345 in earlier sessions), higher when more of the read's objects went
 * to the old generation and died there (95 MB promoted during the read against 33 in a low run). Off,
 * every run measured peaked at 233–253 MB, at the same speed (BENCHMARKS.md, session 13).
 *
 * Applied when this module is loaded: the entry points (cli/main.ts, lsp/server.ts) import it before
 * any other module, so no code runs before it. Flags are per process: the entry workers share it.
 */
import { setFlagsFromString } from 'node:v8';

const GC_FLAGS = ['--no-allocation-site-pretenuring'] as const;

for (const f of GC_FLAGS) setFlagsFromString(f);
