// What build this is: the version and source revision baked into the image (build-info.json,
// written by the Dockerfile from its VERSION and REVISION build arguments), else the version of
// the package.json this file belongs to (a checkout, an npm install). `--version` prints it, and
// the gracefulshutdown_build_info metric carries it.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface BuildInfo {
  version: string;
  /** The source revision (a git commit), when the build knew it. */
  revision?: string;
}

const PACKAGE_NAME = 'graceful-shutdown-operator';

function readJson(path: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** The build info beside this file, else the nearest package.json of this package upwards. */
export function readBuildInfo(from = dirname(fileURLToPath(import.meta.url))): BuildInfo {
  const baked = readJson(join(from, 'build-info.json'));
  if (typeof baked?.version === 'string' && baked.version !== '')
    return {
      version: baked.version,
      ...(typeof baked.revision === 'string' && baked.revision ? { revision: baked.revision } : {}),
    };
  for (let dir = from; ; dir = dirname(dir)) {
    const pkg = readJson(join(dir, 'package.json'));
    if (pkg?.name === PACKAGE_NAME && typeof pkg.version === 'string') return { version: pkg.version };
    if (dirname(dir) === dir) return { version: 'unknown' };
  }
}

export const BUILD: BuildInfo = readBuildInfo();

/** `graceful-shutdown-operator 0.1.0 (revision abc123)`. */
export function versionLine(program: string): string {
  return `${program} ${BUILD.version}${BUILD.revision ? ` (revision ${BUILD.revision})` : ''}`;
}
