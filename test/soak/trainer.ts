/**
 * The soak suite's trainer: a separate process that rewrites sources at a steady rate until told to
 * stop (SIGTERM) or its time is up, half atomically (trainerStep: temp file + rename, as torch.save
 * via a temp name does) and half in place (the new bytes written over the old file in two halves
 * with a pause between, as a plain torch.save(path) does). One JSON line per finished write.
 *
 * argv: root, msBetweenWrites, maxMs, then source paths relative to root.
 */
import { copyFile, mkdir, open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { trainerStep } from '../../server/src/demo/trainerStep';

const [root, gapArg, maxArg, ...sources] = process.argv.slice(2);
const gap = Number(gapArg);
const end = Date.now() + Number(maxArg);
let stop = false;
process.on('SIGTERM', () => (stop = true));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function inPlace(abs: string, scratch: string, match: number): Promise<void> {
  // The next version is made beside (a dot folder: nobody watches it), then written over the file.
  await copyFile(abs, scratch);
  await trainerStep(scratch, { match });
  const bytes = await readFile(scratch);
  const fh = await open(abs, 'r+');
  try {
    const half = Math.floor(bytes.length / 2);
    await fh.write(bytes, 0, half, 0);
    await sleep(30); // a reader (or the watcher) sees a torn file here
    await fh.write(bytes, half, bytes.length - half, half);
    await fh.truncate(bytes.length);
  } finally {
    await fh.close();
  }
}

async function main(): Promise<void> {
  const scratchDir = join(root, '.soak-trainer');
  await mkdir(scratchDir, { recursive: true });
  let i = 0;
  let match = 1000;
  while (!stop && Date.now() < end) {
    const rel = sources[i % sources.length]!;
    const abs = join(root, rel);
    const mode = i % 2 === 0 ? 'atomic' : 'inPlace';
    try {
      if (mode === 'atomic') await trainerStep(abs, { match: match++ });
      else await inPlace(abs, join(scratchDir, `${i}.pt`), match++);
      process.stdout.write(`${JSON.stringify({ t: Date.now(), path: rel, mode })}\n`);
    } catch (e) {
      process.stdout.write(`${JSON.stringify({ t: Date.now(), path: rel, mode, error: (e as Error).message })}\n`);
    }
    i++;
    await sleep(gap);
  }
  await rm(scratchDir, { recursive: true, force: true });
}

void main().then(() => process.exit(0));
