import { defineConfig, type TestProjectInlineConfiguration } from 'vitest/config';

const e2e: TestProjectInlineConfiguration = {
  test: {
    name: 'e2e',
    include: ['test/e2e/**/*.e2e.test.ts'],
    globalSetup: ['test/e2e/global-setup.ts'],
    testTimeout: 180_000,
    hookTimeout: 240_000,
    // One shared control plane; files run one at a time so load on 2 cores stays bounded.
    fileParallelism: false,
  },
};

const compat: TestProjectInlineConfiguration = {
  test: {
    // The compatibility subset, on the oldest supported Kubernetes (npm run test:compat sets
    // GSO_KUBERNETES): the version check, the CRD's validation, the preStop's form, the
    // real node's termination, admission through the webhook, the kustomize install.
    name: 'compat',
    include: [
      'test/e2e/cluster.e2e.test.ts',
      'test/e2e/api.e2e.test.ts',
      'test/e2e/versions.e2e.test.ts',
      'test/e2e/real-node.e2e.test.ts',
      'test/e2e/admission.e2e.test.ts',
      'test/e2e/in-cluster.e2e.test.ts',
    ],
    globalSetup: ['test/e2e/global-setup.ts'],
    testTimeout: 180_000,
    hookTimeout: 240_000,
    fileParallelism: false,
  },
};

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: [
            'operator/**/*.test.ts',
            'demo-service/**/*.test.ts',
            'hack/**/*.test.ts',
            'test/**/*.unit.test.ts',
          ],
          testTimeout: 20_000,
        },
      },
      {
        test: {
          // Starts and stops its own clusters with a real node: runs alone, before e2e, since
          // one real node per machine can run at a time.
          name: 'real-node',
          include: ['test/cluster/**/*.node.test.ts'],
          testTimeout: 300_000,
          hookTimeout: 300_000,
          fileParallelism: false,
        },
      },
      // One cluster project at a time: with GSO_KUBERNETES set the compatibility subset, else
      // e2e. Both would match a file named on the command line, and start two real nodes.
      process.env.GSO_KUBERNETES ? compat : e2e,
    ],
  },
});
