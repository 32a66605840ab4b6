// Prints what a .vsix holds and its size (read with the project's own zip reader, every record's
// CRC checked), and fails when anything outside the allow-list got in: dev dependencies, sources,
// tests, source maps.
import { readFileSync, statSync } from 'node:fs';
import { ZipReader } from '../../server/src/formats/zip/zipReader';

async function main(vsix: string): Promise<void> {
  const zip = await ZipReader.open(vsix);
  try {
    const files = zip.records.map((r) => r.name).filter((n) => n.startsWith('extension/') && !n.endsWith('/'));
    for (const r of zip.records) await zip.read(r, { checkCrc: true });
    const allowed =
      /^extension\/(dist\/(client|server|entryWorker)\.js|dist\/native\/(xxhash|crc32)\.[a-z0-9-]+\.node|media\/[^/]+|schemas\/lora-sync\.schema\.json|readme\.md|license(\.txt)?|changelog\.md|package\.json)$/i;
    const stray = files.filter((f) => !allowed.test(f));
    console.log(`${vsix}: ${(statSync(vsix).size / 1024).toFixed(0)} KiB, ${files.length} files, CRCs good`);
    for (const r of zip.records)
      if (files.includes(r.name))
        console.log(`  ${r.name.slice('extension/'.length).padEnd(24)} ${(r.size / 1024).toFixed(1).padStart(8)} KiB`);
    if (stray.length) throw new Error(`not on the allow-list: ${stray.join(', ')}`);
    // What the manifest points at must ship: a jsonValidation schema left out fails silently in VS Code.
    const manifest = JSON.parse(readFileSync('package.json', 'utf8'));
    const missing = (manifest.contributes?.jsonValidation ?? [])
      .map((v: { url: string }) => `extension/${v.url.replace(/^\.\//, '')}`)
      .filter((f: string) => !files.includes(f));
    if (missing.length) throw new Error(`contributed but not packaged: ${missing.join(', ')}`);
  } finally {
    await zip.close();
  }
}

main(process.argv[2]).catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
