import { describe, expect, test } from 'vitest';
import { repoRoot } from '../test/operator/install.ts';
import { CHART_DIR, helmChartFiles } from './helm-chart.ts';

const files = helmChartFiles(repoRoot);
const template = (name: string) => files.get(`${CHART_DIR}/templates/${name}`) ?? '';

describe('the Helm chart generated from the kustomize manifests', () => {
  test("the install's namespace is the release's wherever it is written, CEL expressions included", () => {
    expect(template('operator-guard.yaml')).toContain(
      "'system:serviceaccount:{{ .Release.Namespace }}:graceful-shutdown-operator'",
    );
    expect(template('rbac.yaml')).toContain('namespace: {{ .Release.Namespace | quote }}');
    for (const [path, text] of files)
      if (!path.endsWith('.json')) expect(text, path).not.toContain('graceful-shutdown-system');
  });

  test("Prometheus's template text in the alert rules is escaped, so Helm writes it as it is", () => {
    const rules = template('prometheus-rules.yaml');
    expect(rules).toContain('{{ "{{" }} $labels.policy {{ "}}" }}');
    expect(rules).not.toMatch(/\{\{ \$labels/);
  });

  test('values take the place of the manifests’ own, optional ones in conditions', () => {
    const deployment = template('deployment.yaml');
    expect(deployment).toContain('replicas: {{ .Values.replicaCount }}');
    expect(deployment).toContain('{{- toYaml .Values.resources | nindent 12 }}');
    expect(deployment).toContain('{{- with .Values.nodeSelector }}');
    expect(deployment).not.toContain('__HELM_');
    expect(template('webhook.yaml')).toMatch(/^\{\{- if \.Values\.webhook\.enabled \}\}$/m);
    expect(template('crd.yaml')).toContain('helm.sh/resource-policy: keep');
  });
});
