/** The layout fixtures (test/fixtures/layouts, written by make_layouts.py) as recognizer inputs. */
import { readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { openCheckpoint } from '../../server/src/formats/checkpoint';
import { describeCheckpoint } from '../../server/src/layouts/describe';
import type { LayoutInput } from '../../server/src/layouts/types';

export const LAYOUTS = join(__dirname, '..', 'fixtures', 'layouts');
export const WORKSPACE = join(__dirname, '..', 'fixtures', 'workspace');

/** Opens the file with the project's reader and describes it, with its folder's listing and config. */
export async function layoutInput(rel: string, root = LAYOUTS): Promise<LayoutInput> {
  const abs = join(root, rel);
  const siblings = readdirSync(dirname(abs)).filter((n) => n !== basename(abs));
  const configText = siblings.includes('adapter_config.json')
    ? readFileSync(join(dirname(abs), 'adapter_config.json'), 'utf8')
    : undefined;
  const c = await openCheckpoint(abs);
  try {
    return describeCheckpoint(c, rel, { siblings, adapterConfigText: configText });
  } finally {
    await c.close();
  }
}
