// The image cache key and the small parsers around the build; nothing here runs buildah.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { appSourceKey, debianMirror, digestKey, mountPointsUnder, parseLdd } from './images.ts';

const git = promisify(execFile);

describe('digestKey', () => {
  test('is 12 hex characters and ignores the order of the entries', () => {
    const key = digestKey([
      ['a', 'x'],
      ['b', Buffer.from('y')],
    ]);
    expect(key).toMatch(/^[0-9a-f]{12}$/);
    expect(
      digestKey([
        ['b', 'y'],
        ['a', 'x'],
      ]),
    ).toBe(key);
  });

  test('changes with a name, a content or the split between them', () => {
    const key = digestKey([['file:a', 'xy']]);
    expect(digestKey([['file:b', 'xy']])).not.toBe(key);
    expect(digestKey([['file:a', 'xz']])).not.toBe(key);
    expect(digestKey([['file:ax', 'y']])).not.toBe(key);
    expect(
      digestKey([
        ['file:a', 'x'],
        ['file:b', 'y'],
      ]),
    ).not.toBe(
      digestKey([
        ['file:a', 'xy'],
        ['file:b', ''],
      ]),
    );
  });
});

describe('appSourceKey', () => {
  let repo: string;
  beforeEach(async () => {
    repo = await mkdtemp(join(tmpdir(), 'gso-images-key-'));
    await git('git', ['init', '-q', repo]);
    for (const [path, text] of Object.entries({
      Dockerfile: 'FROM scratch\n',
      '.dockerignore': 'test\n**/*.test.ts\n',
      '.gitignore': 'dist/\n',
      'package.json': '{}',
      'package-lock.json': '{}',
      'tsconfig.json': '{}',
      'tsconfig.build.json': '{}',
      'operator/src/main.ts': 'console.log(1);\n',
      'operator/src/main.test.ts': 'test(1);\n',
      'demo-service/src/main.ts': 'console.log(2);\n',
      'test/e2e/x.ts': 'test\n',
    })) {
      await mkdir(join(repo, path, '..'), { recursive: true });
      await writeFile(join(repo, path), text);
    }
    await git('git', ['add', '-A'], { cwd: repo });
  });
  afterEach(async () => {
    await rm(repo, { recursive: true, force: true });
  });

  test('is stable while nothing that goes into the images changes', async () => {
    const key = await appSourceKey(repo, ['base1', 'base2']);
    expect(key).toMatch(/^[0-9a-f]{12}$/);
    expect(await appSourceKey(repo, ['base1', 'base2'])).toBe(key);
    // Outside the build context's sources, left out by .dockerignore, or ignored by git.
    await writeFile(join(repo, 'test/e2e/x.ts'), 'changed\n');
    await writeFile(join(repo, 'operator/src/main.test.ts'), 'test(2);\n');
    await writeFile(join(repo, 'demo-service/src/new.test.ts'), 'test(3);\n');
    await mkdir(join(repo, 'operator/dist'), { recursive: true });
    await writeFile(join(repo, 'operator/dist/main.js'), 'built\n');
    expect(await appSourceKey(repo, ['base1', 'base2'])).toBe(key);
  });

  test('changes with a tracked or an untracked source, a package or build file, or a base image', async () => {
    const key = await appSourceKey(repo, ['base1', 'base2']);
    const changed = async (mutate: () => Promise<void>, undo: () => Promise<void>) => {
      await mutate();
      const k = await appSourceKey(repo, ['base1', 'base2']);
      await undo();
      expect(await appSourceKey(repo, ['base1', 'base2'])).toBe(key);
      return k;
    };
    const edit = (path: string, text: string, original: string) =>
      changed(
        () => writeFile(join(repo, path), text),
        () => writeFile(join(repo, path), original),
      );
    expect(await edit('operator/src/main.ts', 'console.log(3);\n', 'console.log(1);\n')).not.toBe(key);
    expect(await edit('demo-service/src/main.ts', 'console.log(3);\n', 'console.log(2);\n')).not.toBe(key);
    expect(await edit('Dockerfile', 'FROM busybox\n', 'FROM scratch\n')).not.toBe(key);
    expect(await edit('package-lock.json', '{"x":1}', '{}')).not.toBe(key);
    expect(await edit('tsconfig.build.json', '{"x":1}', '{}')).not.toBe(key);
    const untracked = join(repo, 'demo-service/src/new.ts');
    expect(
      await changed(
        () => writeFile(untracked, 'new\n'),
        () => rm(untracked),
      ),
    ).not.toBe(key);
    expect(await appSourceKey(repo, ['base1', 'other'])).not.toBe(key);
  });
});

describe('parsers', () => {
  test('debianMirror finds the suite in deb822 and one-line sources', () => {
    const deb822 = [
      'Types: deb',
      'URIs: http://deb.debian.org/debian',
      'Suites: bookworm bookworm-updates',
      'Components: main',
      '',
      'Types: deb',
      'URIs: http://deb.debian.org/debian-security',
      'Suites: bookworm-security',
    ].join('\n');
    expect(debianMirror([{ name: 'debian.sources', text: deb822 }], 'bookworm')).toBe(
      'http://deb.debian.org/debian',
    );
    expect(
      debianMirror(
        [
          { name: 'nodesource.sources.disabled', text: deb822.replace('deb.debian.org', 'elsewhere') },
          { name: 'x.sources', text: `Enabled: no\n${deb822.replace('deb.debian.org', 'off')}` },
          {
            name: 'sources.list',
            text: '# deb http://a/ bookworm main\ndeb [arch=amd64] http://b/debian bookworm main\n',
          },
        ],
        'bookworm',
      ),
    ).toBe('http://b/debian');
    expect(debianMirror([{ name: 'debian.sources', text: deb822 }], 'trixie')).toBeUndefined();
  });

  test('parseLdd lists the libraries and the loader, not the vDSO', () => {
    const out = [
      '\tlinux-vdso.so.1 (0x00007ffd)',
      '\tlibstdc++.so.6 => /lib/x86_64-linux-gnu/libstdc++.so.6 (0x00007f)',
      '\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)',
      '\t/lib64/ld-linux-x86-64.so.2 (0x00007f)',
    ].join('\n');
    expect(parseLdd(out)).toEqual([
      '/lib/x86_64-linux-gnu/libstdc++.so.6',
      '/lib/x86_64-linux-gnu/libc.so.6',
      '/lib64/ld-linux-x86-64.so.2',
    ]);
  });

  test('mountPointsUnder finds what is below the directory, deepest first, unescaped', () => {
    const mounts = [
      '/dev/vda / ext4 rw 0 0',
      'overlay /c/images/store/overlay/root/overlay/abc/merged overlay rw 0 0',
      'proc /c/images/rootfs/.partial\\0401/proc proc rw 0 0',
      'tmpfs /c/images-other tmpfs rw 0 0',
      'tmpfs /c/images tmpfs rw 0 0',
    ].join('\n');
    expect(mountPointsUnder(mounts, '/c/images')).toEqual([
      '/c/images/store/overlay/root/overlay/abc/merged',
      '/c/images/rootfs/.partial 1/proc',
      '/c/images',
    ]);
  });
});
