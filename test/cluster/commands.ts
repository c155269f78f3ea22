// Running build steps: a command whose output goes to a log file, and an error that names the
// step and shows the log's tail when it fails. Shared by the control-plane, node and image
// builds.
import { spawn } from 'node:child_process';
import { open, readFile, stat } from 'node:fs/promises';

/** A build step that failed: which one, why, and where its whole log is. */
export class StepError extends Error {
  readonly step: string;
  readonly logPath: string | undefined;
  constructor(what: string, step: string, message: string, logPath?: string) {
    super(`${what} ${step}: ${message}${logPath ? ` (full log: ${logPath})` : ''}`);
    this.name = 'StepError';
    this.step = step;
    this.logPath = logPath;
  }
}

export async function logTail(logPath: string, lines = 15): Promise<string> {
  const text = await readFile(logPath, 'utf8').catch(() => '');
  return text.trim().split('\n').slice(-lines).join('\n');
}

export async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** 42 s, 3m05s. */
export function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

export interface RunOptions {
  cwd: string;
  env?: NodeJS.ProcessEnv;
  logPath: string;
  /** How the command is named in an error (e.g. without secrets); default the command line. */
  shown?: string;
  /** false: stdout goes to the log too (interleaved with stderr) and nothing is returned. */
  capture?: boolean;
  /** Builds the error of a failed step (the caller's own error class). */
  fail: (message: string, logPath?: string) => Error;
}

/** Runs a command, appending its output to logPath; resolves with stdout, rejects via `fail`. */
export async function runLogged(cmd: string, args: readonly string[], opts: RunOptions): Promise<string> {
  const log = await open(opts.logPath, 'a');
  try {
    await log.write(`$ ${cmd} ${args.join(' ')}\n`);
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['ignore', opts.capture === false ? log.fd : 'pipe', log.fd],
    });
    let stdout = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', resolve);
    }).catch((err: NodeJS.ErrnoException) => {
      throw opts.fail(
        err.code === 'ENOENT' ? `"${cmd}" was not found on PATH` : `could not run ${cmd}: ${err.message}`,
        err.code === 'ENOENT' ? undefined : opts.logPath,
      );
    });
    await log.write(stdout);
    if (code !== 0) {
      throw opts.fail(
        `${opts.shown ?? `${cmd} ${args.join(' ')}`} exited with ${code}:\n${await logTail(opts.logPath)}`,
        opts.logPath,
      );
    }
    return stdout;
  } finally {
    await log.close();
  }
}
