import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { kubeProxyFeatureGates } from './node/node.ts';
import { clusterDir, k8sModuleDir } from './versions.ts';

describe('the Kubernetes line (GSO_KUBERNETES)', () => {
  test('unset or empty: go/k8s; a minor with a module: go/k8s-<minor>', () => {
    expect(k8sModuleDir(undefined)).toBe(join(clusterDir, 'go', 'k8s'));
    expect(k8sModuleDir('')).toBe(join(clusterDir, 'go', 'k8s'));
    expect(k8sModuleDir('1.30')).toBe(join(clusterDir, 'go', 'k8s-1.30'));
  });

  test('a line without a module, or not a minor, is refused naming the ones there are', () => {
    expect(() => k8sModuleDir('1.21')).toThrow(
      'GSO_KUBERNETES=1.21: no module test/cluster/go/k8s-1.21; unset it for the current release, or name one of: 1.30',
    );
    expect(() => k8sModuleDir('../k8s')).toThrow(/no module/);
  });
});

test("kube-proxy's nftables gate is turned on only where the mode is alpha (before 1.31)", () => {
  expect(kubeProxyFeatureGates('v1.30.14')).toEqual({ NFTablesProxyMode: true });
  expect(kubeProxyFeatureGates('v1.31.0')).toBeUndefined();
  expect(kubeProxyFeatureGates('v1.37.2')).toBeUndefined();
});
