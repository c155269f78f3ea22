// gsp as a user installs it: `npm pack` of this repository, the tarball installed into an empty
// directory from the npm registry (no link back to the repository), and the installed `gsp` run
// as a CI job would run it.
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { repoRoot } from '../operator/install.ts';

const run = promisify(execFile);
const blogPost = join(repoRoot, 'operator', 'src', 'cli', 'testdata', 'blog-post.yaml');

/** Runs a command; its exit code and output, whatever the code. */
async function command(
  file: string,
  args: string[],
  opts: { cwd: string; input?: string },
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = execFile(file, args, { cwd: opts.cwd, maxBuffer: 16 * 1024 * 1024 });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  child.stdin?.end(opts.input ?? '');
  const code = await new Promise<number>((done) => child.once('close', (c) => done(c ?? -1)));
  return { code, stdout, stderr };
}

let dir: string;
let gsp: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gsp-package-'));
  // npm pack runs the prepack script (the TypeScript build) and writes the tarball.
  const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', dir], {
    cwd: repoRoot,
    maxBuffer: 64 * 1024 * 1024,
  });
  const [packed] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
  if (!packed) throw new Error('npm pack printed no package');
  const app = join(dir, 'app');
  await run('mkdir', [app]);
  await writeFile(join(app, 'package.json'), '{ "name": "ci-job", "private": true }\n');
  await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', join(dir, packed.filename)], {
    cwd: app,
    maxBuffer: 64 * 1024 * 1024,
  });
  gsp = join(app, 'node_modules', '.bin', 'gsp');
}, 240_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('the gsp package', () => {
  test('holds the compiled command and no sources, tests or test data', async () => {
    const packageDir = join(dir, 'app', 'node_modules', 'graceful-shutdown-operator');
    const files = await readdir(packageDir, { recursive: true });
    expect(files).toContain(join('dist', 'operator', 'src', 'cli', 'bin.js'));
    expect(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);
    expect(files.filter((f) => /(^|\/)(testing|testdata|test-)|\.test\./.test(f))).toEqual([]);
    const manifest = JSON.parse(await readFile(join(packageDir, 'package.json'), 'utf8')) as {
      bin: Record<string, string>;
    };
    expect(manifest.bin).toEqual({ gsp: 'dist/operator/src/cli/bin.js' });
  });

  test('installed in an empty directory, `gsp audit -` reads standard input and exits 1 on findings', async () => {
    const out = await command(gsp, ['audit', '-'], { cwd: dir, input: await readFile(blogPost, 'utf8') });
    expect(out.code, out.stderr).toBe(1);
    expect(out.stdout).toContain('ERROR MisplacedTerminationGracePeriod Deployment shop/flask-app');
    expect(out.stdout).toContain('2 workloads (2 Deployments), 0 policies: 2 errors, 2 warnings, 0 notes');
    const sarif = await command(gsp, ['audit', '-o', 'sarif', '--stdin-name', 'deploy/app.yaml', '-'], {
      cwd: dir,
      input: await readFile(blogPost, 'utf8'),
    });
    const log = JSON.parse(sarif.stdout) as { runs: { results: { ruleId: string }[] }[] };
    expect(log.runs[0]?.results.map((r) => r.ruleId)).toContain('PreStopNotShorterThanGrace');
    expect((await command(gsp, ['--help'], { cwd: dir })).code).toBe(0);
  });

  test('on a Node.js older than 24 it says so and exits 2, before loading anything', async () => {
    // This machine's Node.js is the project's; an older one is played by overriding the version.
    const older =
      'data:text/javascript,Object.defineProperty(process.versions,"node",{value:"20.1.0"});Object.defineProperty(process,"version",{value:"v20.1.0"})';
    const out = await command(process.execPath, ['--import', older, gsp, 'audit', '-'], { cwd: dir });
    expect(out).toMatchObject({
      code: 2,
      stdout: '',
      stderr: 'gsp needs Node.js 24 or newer; this is v20.1.0\n',
    });
  });
});
