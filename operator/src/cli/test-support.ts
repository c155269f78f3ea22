// Running gsp in-process for tests: its exit code and what it printed. (Left out of the build.)
import { Readable } from 'node:stream';
import { run } from './gsp.ts';

export async function gspRun(
  args: string[],
  stdin = '',
): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await run(args, {
    stdin: Readable.from([stdin]),
    stdout: (t) => {
      stdout += t;
    },
    stderr: (t) => {
      stderr += t;
    },
  });
  return { code, stdout, stderr };
}
