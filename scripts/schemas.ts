// `npm run schemas`: writes the published JSON Schemas of `status --json` and `verify --json`
// (docs/schemas/, built from the status table by server/src/cli/outputSchemas.ts) and regenerates
// the engine's lora-sync.json validator. A unit test fails while the published files are stale.
import { mkdirSync, writeFileSync } from 'node:fs';
import { OUTPUT_SCHEMAS } from '../server/src/cli/outputSchemas';
import { writeIfChanged } from './configValidator.mjs';

mkdirSync('docs/schemas', { recursive: true });
for (const [name, build] of Object.entries(OUTPUT_SCHEMAS))
  writeFileSync(`docs/schemas/${name}`, `${JSON.stringify(build(), null, 2)}\n`);
writeIfChanged();
console.log(`wrote docs/schemas/{${Object.keys(OUTPUT_SCHEMAS).join(',')}}`);
