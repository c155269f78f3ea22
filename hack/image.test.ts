import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { findBuilder, imageCommands, tagProblem } from './image.ts';

const request = {
  tag: 'registry.example/team/gso:1.0.0',
  target: 'operator' as const,
  version: '1.0.0',
  revision: 'abc123',
  push: true,
  buildArgs: [],
  context: '/src',
};

describe('npm run image', () => {
  test('docker and podman build and push alike; buildah uses bud with its layer cache', () => {
    const tail = [
      '--target',
      'operator',
      '--tag',
      request.tag,
      '--build-arg',
      'VERSION=1.0.0',
      '--build-arg',
      'REVISION=abc123',
      '--file',
      '/src/Dockerfile',
      '/src',
    ];
    expect(imageCommands({ ...request, builder: 'docker' })).toEqual([
      ['docker', 'build', ...tail],
      ['docker', 'push', request.tag],
    ]);
    expect(imageCommands({ ...request, builder: 'podman', push: false })).toEqual([
      ['podman', 'build', ...tail],
    ]);
    expect(
      imageCommands({ ...request, builder: 'buildah', buildArgs: ['RUNTIME_IMAGE=local/runtime:1'] })[0],
    ).toEqual([
      'buildah',
      'bud',
      '--layers',
      ...tail.slice(0, 8),
      '--build-arg',
      'RUNTIME_IMAGE=local/runtime:1',
      ...tail.slice(8),
    ]);
  });

  test('a tag must name a repository and a tag', () => {
    expect(tagProblem('registry.example:5000/team/gso:v1.2.3')).toBeUndefined();
    expect(tagProblem('gso:latest')).toBeUndefined();
    expect(tagProblem('registry.example/team/gso')).toMatch(/^--tag: want REGISTRY\/NAME:TAG/);
    expect(tagProblem('Team/GSO:1')).toMatch(/^--tag:/);
  });

  describe('the builder is the first of docker, podman, buildah on PATH', () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'gso-builders-'));
      for (const [sub, tool] of [
        ['a', 'buildah'],
        ['b', 'podman'],
        ['c', 'docker.txt'],
      ] as const) {
        await mkdir(join(dir, sub));
        await writeFile(join(dir, sub, tool), '#!/bin/sh\n');
        await chmod(join(dir, sub, tool), 0o755);
      }
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });
    test('by preference, not PATH order; none is undefined', () => {
      expect(findBuilder([join(dir, 'a'), join(dir, 'b')].join(delimiter))).toBe('podman');
      expect(findBuilder(join(dir, 'a'))).toBe('buildah');
      expect(findBuilder(join(dir, 'c'))).toBeUndefined();
    });
  });
});
