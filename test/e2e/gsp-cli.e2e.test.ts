// `gsp audit --cluster`: the policies come from the cluster (the real apiserver), the manifests
// from standard input; the verdict is the one the operator would give.
import { Readable } from 'node:stream';
import { beforeAll, describe, expect, test } from 'vitest';
import { EXIT, run } from '../../operator/src/cli/gsp.ts';
import { installOperatorPrerequisites } from '../operator/harness.ts';
import { clusterInfo, useNamespace, usePolicies } from './support.ts';

const ns = useNamespace('gsp-cli');
const policies = usePolicies();

beforeAll(async () => {
  await installOperatorPrerequisites(clusterInfo().kubectl, clusterInfo().kubeconfig); // the CRD
});

describe('gsp audit --cluster', () => {
  test("reads the cluster's policies and judges a manifest by them", async () => {
    await policies.apply('gsp-cli', ns.name, { mode: 'Audit', observedLatency: { source: 'None' } });
    const manifest = `apiVersion: apps/v1
kind: Deployment
metadata: { name: web, namespace: ${ns.name} }
spec:
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      containers: [{ name: web, image: registry.example/web:1, ports: [{ containerPort: 8080 }] }]
`;
    let stdout = '';
    let stderr = '';
    const code = await run(['audit', '--cluster', '--kubeconfig', clusterInfo().kubeconfig, '-'], {
      stdin: Readable.from([manifest]),
      stdout: (t) => {
        stdout += t;
      },
      stderr: (t) => {
        stderr += t;
      },
    });
    expect(code, stderr).toBe(EXIT.findings);
    expect(stdout).toMatch(new RegExp(`${ns.name}/web\\s+gsp-cli\\s+NonCompliant\\s+PreStopMissing`));
    const unreachable = await run(['audit', '--cluster', '--kubeconfig', '/nonexistent', '-'], {
      stdin: Readable.from([manifest]),
      stdout: () => {},
      stderr: (t) => {
        stderr = t;
      },
    });
    expect(unreachable).toBe(EXIT.input);
    expect(stderr).toContain('gsp: cluster:0: cannot read the policies');
  });
});
