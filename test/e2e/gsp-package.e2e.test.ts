// gsp as a user installs it: `npm pack` of this repository, the tarball installed into an empty
// directory from the npm registry (no link back to the repository), and the installed `gsp` run
// as a CI job would run it.
import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
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
  // A command that exits without reading its input (git) closes the pipe first: the EPIPE of
  // the write is expected, and unhandled it would fail the whole run.
  child.stdin?.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') stderr += `stdin: ${err.message}\n`;
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
    expect(files).toContain(join('hooks', 'pre-commit'));
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

  test('its git pre-commit hook stops a commit of a manifest with an error finding, and lets the fixed one through', async () => {
    const app = join(dir, 'app');
    const git = (...args: string[]) =>
      command('git', ['-c', 'user.name=ci', '-c', 'user.email=ci@example.invalid', ...args], { cwd: app });
    expect((await git('init', '-q')).code).toBe(0);
    await copyFile(
      join(app, 'node_modules', 'graceful-shutdown-operator', 'hooks', 'pre-commit'),
      join(app, '.git', 'hooks', 'pre-commit'),
    );
    await chmod(join(app, '.git', 'hooks', 'pre-commit'), 0o755);
    await copyFile(blogPost, join(app, 'app.yaml'));
    await git('add', 'app.yaml');
    const refused = await git('commit', '-q', '-m', 'the blog post as it was');
    expect(refused.code).not.toBe(0);
    // git runs hooks with their standard output sent to its standard error.
    expect(refused.stderr).toContain('ERROR MisplacedTerminationGracePeriod Deployment shop/flask-app');
    expect((await git('log', '--oneline')).stdout).toBe('');
    // gsp --fix corrects the file; what is left are warnings, which do not stop the commit...
    await command(gsp, ['audit', '--fix', '--fail-on', 'none', 'app.yaml'], { cwd: app });
    const text = (await readFile(join(app, 'app.yaml'), 'utf8')).replace(
      'terminationGracePeriodSeconds: 10',
      'terminationGracePeriodSeconds: 30',
    );
    await writeFile(join(app, 'app.yaml'), text);
    await git('add', 'app.yaml');
    const accepted = await git('commit', '-q', '-m', 'fixed');
    expect(accepted.code, accepted.stdout + accepted.stderr).toBe(0);
    // ...unless the flags say so.
    await writeFile(join(app, 'other.yaml'), text.replaceAll('shop', 'other'));
    await git('add', 'other.yaml');
    const strict = await command(
      'sh',
      [
        '-c',
        'GSP_AUDIT_FLAGS="--fail-on warning" git -c user.name=ci -c user.email=ci@example.invalid commit -q -m strict',
      ],
      { cwd: app },
    );
    expect(strict.code).not.toBe(0);
    expect((await git('log', '--oneline')).stdout.trim().split('\n')).toHaveLength(1);
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
