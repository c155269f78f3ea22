// `npm run image -- --tag REGISTRY/NAME:TAG [--push]`: builds the operator's image from the
// Dockerfile with whichever of docker, podman or buildah is installed (or --builder), with the
// version and source revision baked in (build-info.json and OCI labels), and pushes it on --push.
// `--dry-run` prints the commands instead. The tests build the same Dockerfile with buildah
// (test/cluster/images.ts).
import { execFileSync, spawnSync } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

export const BUILDERS = ['docker', 'podman', 'buildah'] as const;
export type Builder = (typeof BUILDERS)[number];

export interface ImageRequest {
  builder: Builder;
  tag: string;
  target: 'operator' | 'demo-service';
  version: string;
  revision: string;
  push: boolean;
  /** More --build-arg KEY=VALUE (e.g. other base images: BUILD_IMAGE, RUNTIME_IMAGE). */
  buildArgs: string[];
  context: string;
}

/** The commands that build (and push) the image, each an argv. */
export function imageCommands(r: ImageRequest): string[][] {
  const args = [
    '--target',
    r.target,
    '--tag',
    r.tag,
    ...[`VERSION=${r.version}`, `REVISION=${r.revision}`, ...r.buildArgs].flatMap((a) => ['--build-arg', a]),
    '--file',
    join(r.context, 'Dockerfile'),
    r.context,
  ];
  const build =
    r.builder === 'buildah' ? ['buildah', 'bud', '--layers', ...args] : [r.builder, 'build', ...args];
  return r.push ? [build, [r.builder, 'push', r.tag]] : [build];
}

/** The first builder on PATH, in BUILDERS order. */
export function findBuilder(path = process.env.PATH ?? ''): Builder | undefined {
  const dirs = path.split(delimiter).filter(Boolean);
  return BUILDERS.find((b) =>
    dirs.some((d) => {
      try {
        accessSync(join(d, b), constants.X_OK);
        return true;
      } catch {
        return false;
      }
    }),
  );
}

/** A tag is REGISTRY/NAME:TAG or NAME:TAG, lowercase as OCI references are. */
export function tagProblem(tag: string): string | undefined {
  if (!/^[a-z0-9][a-z0-9._\-/:]*[a-z0-9]:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(tag))
    return `--tag: want REGISTRY/NAME:TAG (lowercase name, a tag after the last colon), got "${tag}"`;
  return undefined;
}

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

function gitRevision(): string {
  try {
    const sha = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: repoRoot, encoding: 'utf8' }).trim();
    const dirty =
      execFileSync('git', ['status', '--porcelain'], { cwd: repoRoot, encoding: 'utf8' }).trim() !== '';
    return dirty ? `${sha}-dirty` : sha;
  } catch {
    return '';
  }
}

const USAGE = `usage: npm run image -- --tag REGISTRY/NAME:TAG [--push] [--builder docker|podman|buildah]
       [--target operator|demo-service] [--version V] [--build-arg KEY=VALUE]... [--dry-run]`;

function parseImageArgs(argv: string[]) {
  return parseArgs({
    args: argv,
    options: {
      tag: { type: 'string' },
      push: { type: 'boolean', default: false },
      builder: { type: 'string' },
      target: { type: 'string', default: 'operator' },
      version: { type: 'string' },
      'build-arg': { type: 'string', multiple: true, default: [] },
      'dry-run': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }).values;
}

function main(argv: string[]): number {
  let values: ReturnType<typeof parseImageArgs>;
  try {
    values = parseImageArgs(argv);
  } catch (error) {
    process.stderr.write(`image: ${(error as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const fail = (message: string) => {
    process.stderr.write(`image: ${message}\n${USAGE}\n`);
    return 2;
  };
  if (!values.tag) return fail('--tag is required');
  const problem = tagProblem(values.tag);
  if (problem) return fail(problem);
  if (values.target !== 'operator' && values.target !== 'demo-service')
    return fail(`--target: want operator or demo-service, got "${values.target}"`);
  const builder = (values.builder ?? findBuilder()) as Builder | undefined;
  if (builder === undefined)
    return fail('none of docker, podman or buildah is on PATH (or name one with --builder)');
  if (!BUILDERS.includes(builder)) return fail(`--builder: want docker, podman or buildah, got "${builder}"`);
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  const commands = imageCommands({
    builder,
    tag: values.tag,
    target: values.target,
    version: values.version ?? pkg.version,
    revision: gitRevision(),
    push: values.push,
    buildArgs: values['build-arg'],
    context: repoRoot,
  });
  for (const command of commands) {
    process.stdout.write(`${command.join(' ')}\n`);
    if (values['dry-run']) continue;
    const [file, ...args] = command as [string, ...string[]];
    const { status, error } = spawnSync(file, args, { stdio: 'inherit' });
    if (error) return fail(`${file}: ${error.message}`);
    if (status !== 0) {
      process.stderr.write(`image: ${command.slice(0, 2).join(' ')} exited ${status}\n`);
      return 1;
    }
  }
  return 0;
}

if (import.meta.main) process.exitCode = main(process.argv.slice(2));
