import { spawnSync } from 'node:child_process';
import { describe, expect, test } from 'vitest';

const cli = (...args: string[]) =>
  spawnSync(process.execPath, ['test/drain/cli.ts', ...args], { encoding: 'utf8', timeout: 10_000 });

describe('drain-test CLI', () => {
  test('--help prints the usage and exits 0', () => {
    const run = cli('--help');
    expect(run.status).toBe(0);
    expect(run.stdout).toContain('--cmd');
    expect(run.stdout).toMatch(/--keep-alive MODE .*Keep-Alive: timeout=N/);
    expect(run.stdout).toMatch(/respect +drop idle sockets before N/);
    expect(run.stdout).toMatch(/ignore +keep idle sockets past N and reuse them/);
  });

  test('bad usage exits 2 and says why', () => {
    expect(cli().status).toBe(2);
    expect(cli().stderr).toContain('--cmd is required');
    const bad = cli('--cmd', 'true', '--rate', 'fast');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('--rate wants a number');
    const mode = cli('--cmd', 'true', '--keep-alive', 'sometimes');
    expect(mode.status).toBe(2);
    expect(mode.stderr).toContain('--keep-alive wants respect or ignore, got "sometimes"');
  });
});
