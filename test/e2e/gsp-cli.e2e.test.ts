// `gsp audit --cluster`: the policies come from the cluster (the real apiserver), the manifests
// from standard input; the verdict is the one the operator would give. And gsp from the operator's
// image, as a pipeline without Node.js would run it.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { EXIT } from '../../operator/src/cli/gsp.ts';
import { gspRun } from '../../operator/src/cli/test-support.ts';
import { installOperatorPrerequisites } from '../operator/harness.ts';
import { repoRoot } from '../operator/install.ts';
import { clusterInfo, kubectl, useNamespace, usePolicies } from './support.ts';

const blogPost = join(repoRoot, 'operator', 'src', 'cli', 'testdata', 'blog-post.yaml');

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
    const judged = await gspRun(
      ['audit', '--cluster', '--kubeconfig', clusterInfo().kubeconfig, '-'],
      manifest,
    );
    expect(judged.code, judged.stderr).toBe(EXIT.findings);
    expect(judged.stdout).toMatch(new RegExp(`${ns.name}/web\\s+gsp-cli\\s+NonCompliant\\s+PreStopMissing`));
    const unreachable = await gspRun(['audit', '--cluster', '--kubeconfig', '/nonexistent', '-'], manifest);
    expect(unreachable.code).toBe(EXIT.input);
    expect(unreachable.stderr).toContain('gsp: cluster:0: cannot read the policies');
  });

  test('the operator image runs `gsp audit -` on standard input (kubectl run -i on the real node), exit code and all', async () => {
    const { placement, operatorImage } = clusterInfo().realNode;
    const out = await kubectl(
      [
        'run',
        'gsp-stdin',
        '-n',
        ns.name,
        '-i',
        '--quiet',
        '--restart=Never',
        `--image=${operatorImage}`,
        '--image-pull-policy=Never',
        `--overrides=${JSON.stringify({ apiVersion: 'v1', spec: placement })}`,
        '--',
        'gsp',
        'audit',
        '-',
      ],
      { input: await readFile(blogPost, 'utf8') },
    );
    expect(out.stdout).toContain('ERROR MisplacedTerminationGracePeriod Deployment shop/flask-app (-:29:11)');
    expect(out.stdout).toContain('2 workloads (2 Deployments), 0 policies: 2 errors, 2 warnings, 0 notes');
    // gsp's exit code 1 (findings) is the container's, and kubectl's.
    expect(out.code).toBe(1);
    const pod = await kubectl([
      'get',
      'pod',
      'gsp-stdin',
      '-n',
      ns.name,
      '-o',
      'jsonpath={.status.containerStatuses[0].state.terminated.exitCode}',
    ]);
    expect(pod.stdout).toBe('1');
  });
});
