// Running gsp in-process for tests, and the policies the tests audit with. (Left out of the build.)
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

/** A policy named shop, in `mode`, for the Deployments of namespace shop; no latency source. */
export const shopPolicy = (mode: 'Audit' | 'Enforce') => `apiVersion: gracefulshutdown.dev/v1alpha1
kind: GracefulShutdownPolicy
metadata: { name: shop }
spec:
  mode: ${mode}
  namespaceSelector: { matchLabels: { kubernetes.io/metadata.name: shop } }
  observedLatency: { source: None }
`;
