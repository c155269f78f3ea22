import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { readBuildInfo } from './version.ts';

describe('readBuildInfo', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gso-version-'));
    await writeFile(
      join(dir, 'package.json'),
      JSON.stringify({ name: 'graceful-shutdown-operator', version: '1.2.3' }),
    );
    await mkdir(join(dir, 'dist', 'operator', 'src'), { recursive: true });
    await mkdir(join(dir, 'baked'), { recursive: true });
    await writeFile(
      join(dir, 'baked', 'build-info.json'),
      JSON.stringify({ version: 'v1.3.0-rc.1', revision: 'abc123' }),
    );
    await mkdir(join(dir, 'unbaked'), { recursive: true });
    await writeFile(join(dir, 'unbaked', 'build-info.json'), JSON.stringify({ version: '', revision: '' }));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('the image build info wins; else the nearest package.json of this package upwards', () => {
    expect(readBuildInfo(join(dir, 'baked'))).toEqual({ version: 'v1.3.0-rc.1', revision: 'abc123' });
    expect(readBuildInfo(join(dir, 'dist', 'operator', 'src'))).toEqual({ version: '1.2.3' });
    expect(readBuildInfo(join(dir, 'unbaked'))).toEqual({ version: '1.2.3' });
    expect(readBuildInfo('/')).toEqual({ version: 'unknown' });
  });
});
