// Debian packages the real node and the image build need (runc, nftables, buildah, ...): checked
// with dpkg-query, installed with apt-get when missing. As root that just happens; otherwise the
// error names the exact command to run.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export class HostPackageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HostPackageError';
  }
}

/** The packages of `names` that dpkg does not list as installed. */
export async function missingPackages(names: readonly string[]): Promise<string[]> {
  const missing: string[] = [];
  for (const name of names) {
    // dpkg-query's own format syntax, not a template literal.
    const format = ['$', '{db:Status-Status}'].join('');
    const status = await run('dpkg-query', ['-W', '-f', format, name]).then(
      (r) => r.stdout.trim(),
      () => 'not-installed',
    );
    if (status !== 'installed') missing.push(name);
  }
  return missing;
}

/**
 * Makes sure every package is installed. `apt-get update` runs once, only when something is
 * missing. Not root: throws naming the command to run by hand.
 */
export async function ensureDebianPackages(
  names: readonly string[],
  progress: (line: string) => void,
): Promise<void> {
  const missing = await missingPackages(names);
  if (missing.length === 0) return;
  const command = `apt-get update && apt-get install -y --no-install-recommends ${missing.join(' ')}`;
  if (process.getuid?.() !== 0) {
    throw new HostPackageError(
      `the real node needs the Debian packages ${missing.join(', ')}; install them as root: sudo sh -c '${command}'`,
    );
  }
  progress(`[host] installing Debian packages: ${missing.join(', ')}`);
  const t0 = Date.now();
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  try {
    await run('apt-get', ['update', '-q'], { env, maxBuffer: 64 * 1024 * 1024 });
    await run('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...missing], {
      env,
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new HostPackageError(
      `${command} failed: ${e.stderr?.trim().split('\n').slice(-5).join('\n') || e.message}`,
    );
  }
  const still = await missingPackages(missing);
  if (still.length > 0) throw new HostPackageError(`${command} did not install ${still.join(', ')}`);
  progress(`[host] installed ${missing.join(', ')} in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}
