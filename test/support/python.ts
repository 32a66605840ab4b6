/**
 * The Python the tests and benchmarks run: Debian's /usr/bin/python3, where `apt-get install
 * python3-torch python3-xxhash` puts torch (CI does). Its helper scripts all live in test/python/.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';

export const PY = '/usr/bin/python3';

/** The folder of those scripts (for Python code that imports one of them). */
export const PY_DIR = join(__dirname, '..', 'python');

/** A helper script of test/python/, e.g. `pyScript('make_hostile.py')`. */
export const pyScript = (name: string) => join(PY_DIR, name);

let torch: boolean | undefined;
/** Whether PY can import torch; asked once per process (importing torch takes a second or two). */
export function hasTorch(): boolean {
  torch ??= spawnSync(PY, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
  return torch;
}

/** For suites that need torch and must fail, not skip, without it: throws the import error. */
export function requireTorch(): void {
  execFileSync(PY, ['-c', 'import torch']);
}
