import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { openCheckpoint } from '../../server/src/formats/checkpoint';
import { isFormatError } from '../../server/src/formats/errors';
import { lfsPointerIssue, mayBeLfsPointer, parseLfsPointer } from '../../server/src/layouts/lfsPointer';
import { sha256File } from '../support/files';
import { LAYOUTS } from '../support/layoutFixtures';

describe('layouts: git-lfs pointers', () => {
  const file = join(LAYOUTS, 'lfs/pixel_style.safetensors');

  it('the committed pointer gives the oid and size of the file it stands for', async () => {
    const bytes = await readFile(file);
    assert.ok(mayBeLfsPointer(bytes.subarray(0, 64), bytes.length));
    const p = parseLfsPointer(bytes);
    // it points at the final kohya save, byte for byte
    const target = join(LAYOUTS, 'train/kohya/pixel_style.safetensors');
    assert.deepEqual(p, { oid: await sha256File(target), size: (await readFile(target)).length });
  });

  it('the reader calls it no checkpoint; the issue tells to run git lfs pull', async () => {
    await assert.rejects(openCheckpoint(file), (e) => isFormatError(e) && e.code === 'NOT_A_CHECKPOINT');
    const p = parseLfsPointer(await readFile(file))!;
    const issue = lfsPointerIssue('lfs/pixel_style.safetensors', p);
    assert.equal(issue.type, 'LFS_POINTER');
    assert.match(
      issue.detail,
      /^a git-lfs pointer to a \d+-byte file \(sha256 [0-9a-f]{12}…\), not the file itself: run `git lfs pull`$/,
    );
  });

  it('rejects what is not a pointer', () => {
    const oid = 'a'.repeat(64);
    const ok = `version https://git-lfs.github.com/spec/v1\noid sha256:${oid}\nsize 12345\n`;
    assert.deepEqual(parseLfsPointer(Buffer.from(ok)), { oid, size: 12345 });
    assert.deepEqual(parseLfsPointer(Buffer.from(ok.replace('git-lfs.github.com', 'hawser.github.com'))), {
      oid,
      size: 12345,
    });
    // extension lines (ext-0-foo) are allowed between version and oid
    assert.ok(parseLfsPointer(Buffer.from(ok.replace('\noid', `\next-0-foo sha256:${'b'.repeat(64)}\noid`))));
    for (const bad of [
      ok.slice(0, -1), // no final newline
      ok.replace('v1', 'v2'),
      ok.replace(`sha256:${oid}`, `sha256:${oid.slice(1)}`),
      ok.replace(`sha256:${oid}`, `md5:${oid}`),
      ok.replace('size 12345', 'size -1'),
      ok.replace('\nsize 12345', ''),
      ok.replace('\r', '').replace(/\n/g, '\r\n'),
      `${ok}${'x'.repeat(1024)}\n`,
    ])
      assert.equal(parseLfsPointer(Buffer.from(bad)), undefined, JSON.stringify(bad.slice(0, 80)));
    assert.ok(!mayBeLfsPointer(Buffer.from('{"__metadata__":{}}'), 20));
    assert.ok(!mayBeLfsPointer(Buffer.from(ok), 5000));
  });
});
