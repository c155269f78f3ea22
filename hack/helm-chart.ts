// The Helm chart's templates, generated from the kustomize manifests under config/ (the same
// files `kubectl apply -k config/default` reads), so the two cannot drift: `npm run generate`
// writes config/helm/graceful-shutdown-operator/{templates,files}, and `npm run generate --
// --check` fails when they are stale. Chart.yaml, values.yaml and the helpers are written by hand.
//
// Each object is read as kustomize reads it, given the install's labels (Helm's instead of
// kustomize's managed-by), and written out as YAML in which the chart's values take the place of
// the manifests' own: a string value becomes a marker, and the marker is replaced by the template
// expression once the YAML is written. Whole lines (optional keys and list items) are markers
// too. Text that Helm would read as a template (`{{ $labels.policy }}` in the alert rules) is
// escaped first, and the install's namespace becomes `.Release.Namespace` wherever it is written
// (metadata, subjects, the webhook's Service, the CEL expressions naming the service account).
// Pure: reads config/, returns the files.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';

export const CHART_DIR = 'config/helm/graceful-shutdown-operator';
/** The namespace the kustomize install uses; the chart installs into the release's. */
export const KUSTOMIZE_NAMESPACE = 'graceful-shutdown-system';

type Obj = Record<string, unknown>;

/** One template: the manifests it is made of, the condition it is rendered under, its edits. */
interface TemplateSource {
  template: string;
  files: string[];
  /** A Helm condition (`.Values.webhook.enabled`); always rendered when absent. */
  when?: string;
  edit?: (object: Obj, mark: Marker) => void;
}

const TEMPLATES: TemplateSource[] = [
  {
    template: 'crd.yaml',
    files: ['crds/gracefulshutdown.dev_gracefulshutdownpolicies.yaml'],
    when: '.Values.crds.install',
    // Kept on uninstall (deleting the CRD deletes every policy), unless crds.keep is false.
    edit: (crd, mark) => {
      const meta = crd.metadata as Obj;
      meta[
        mark.line('{{- if .Values.crds.keep }}\nannotations:\n  helm.sh/resource-policy: keep\n{{- end }}')
      ] = '';
    },
  },
  {
    template: 'rbac.yaml',
    files: [
      'config/rbac/service_account.yaml',
      'config/rbac/role.yaml',
      'config/rbac/role_binding.yaml',
      'config/rbac/leader_election_role.yaml',
      'config/rbac/leader_election_role_binding.yaml',
    ],
  },
  {
    template: 'webhook-rbac.yaml',
    files: ['config/rbac/webhook_role.yaml', 'config/rbac/webhook_role_binding.yaml'],
    when: '.Values.webhook.enabled',
  },
  { template: 'operator-guard.yaml', files: ['config/rbac/operator_guard.yaml'] },
  { template: 'deployment.yaml', files: ['config/manager/manager.yaml'], edit: editManager },
  {
    template: 'services.yaml',
    files: ['config/manager/metrics_service.yaml'],
  },
  {
    template: 'network-policy.yaml',
    files: ['config/manager/network_policy.yaml', 'config/manager/pod_disruption_budget.yaml'],
  },
  {
    template: 'webhook.yaml',
    files: ['config/webhook/service.yaml', 'config/webhook/mutating_webhook_configuration.yaml'],
    when: '.Values.webhook.enabled',
    // With cert-manager's certificates, its CA injector fills the caBundle.
    edit: (object, mark) => {
      if (object.kind !== 'MutatingWebhookConfiguration') return;
      (object.metadata as Obj)[
        mark.line(
          [
            '{{- if eq .Values.webhook.certificates "CertManager" }}',
            'annotations:',
            '  cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/graceful-shutdown-operator-webhook',
            '{{- end }}',
          ].join('\n'),
        )
      ] = '';
    },
  },
  {
    template: 'service-monitor.yaml',
    files: ['config/prometheus/monitor.yaml'],
    when: '.Values.monitoring.serviceMonitor.enabled',
  },
  {
    template: 'prometheus-rules.yaml',
    files: ['config/prometheus/rules.yaml'],
    when: '.Values.monitoring.rules.enabled',
  },
];

/** Markers for values and whole lines, replaced by template text after the YAML is written. */
class Marker {
  readonly values = new Map<string, string>();
  readonly lines = new Map<string, string>();
  /** A scalar replaced by this template expression (written without quotes). */
  value(expression: string): string {
    const key = `__HELM_VALUE_${this.values.size}__`;
    this.values.set(key, expression);
    return key;
  }
  /**
   * A map key (or a list item's) whose whole line is replaced by these template lines, each
   * indented where the key stands; `§` in them is that indentation's width, `§+2` two more
   * (for `nindent`, which counts from the line's start).
   */
  line(text: string): string {
    const key = `__HELM_LINE_${this.lines.size}__`;
    this.lines.set(key, text);
    return key;
  }
}

function editManager(deployment: Obj, mark: Marker): void {
  const spec = deployment.spec as Obj;
  spec.replicas = mark.value('{{ .Values.replicaCount }}');
  const pod = (spec.template as Obj).spec as Obj;
  const container = (pod.containers as Obj[])[0] as Obj;
  container.image = mark.value(
    '"{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"',
  );
  const env = container.env as Obj[];
  const logLevel = env.find((e) => e.name === 'LOG_LEVEL') as Obj;
  logLevel.value = mark.value('{{ .Values.logLevel | quote }}');
  // Optional settings: a list item each, rendered only when the value asks for it.
  env.push({
    [mark.line(
      [
        '{{- with .Values.prometheus.url }}',
        '- name: PROMETHEUS_URL',
        '  value: {{ . | quote }}',
        '{{- end }}',
        '{{- if not .Values.webhook.enabled }}',
        '- name: WEBHOOK',
        '  value: "false"',
        '{{- else if eq .Values.webhook.certificates "CertManager" }}',
        '- name: WEBHOOK_CERTIFICATES',
        '  value: External',
        '{{- end }}',
      ].join('\n'),
    )]: '',
  });
  container[mark.line('{{- with .Values.image.pullPolicy }}\nimagePullPolicy: {{ . }}\n{{- end }}')] = '';
  container.resources = mark.value('RESOURCES');
  pod[
    mark.line(
      [
        '{{- with .Values.imagePullSecrets }}',
        'imagePullSecrets:',
        '  {{- toYaml . | nindent §+2 }}',
        '{{- end }}',
        '{{- with .Values.nodeSelector }}',
        'nodeSelector:',
        '  {{- toYaml . | nindent §+2 }}',
        '{{- end }}',
        '{{- with .Values.affinity }}',
        'affinity:',
        '  {{- toYaml . | nindent §+2 }}',
        '{{- end }}',
        '{{- with .Values.tolerations }}',
        'tolerations:',
        '  {{- toYaml . | nindent §+2 }}',
        '{{- end }}',
      ].join('\n'),
    )
  ] = '';
}

/** Helm's template delimiters in the manifests' own text, escaped so that Helm writes them. */
function escapeTemplates(text: string): string {
  // One pass: what a replacement writes is not read again.
  return text.replace(/\{\{|\}\}/g, (d) => (d === '{{' ? '{{ "{{" }}' : '{{ "}}" }}'));
}

/** The install's labels on every object: the part-of label kustomize adds, and Helm's own. */
function addLabels(object: Obj, mark: Marker): void {
  object.metadata ??= {};
  const meta = object.metadata as Obj;
  meta.labels ??= {};
  const labels = meta.labels as Obj;
  labels['app.kubernetes.io/part-of'] = 'graceful-shutdown-operator';
  labels[mark.line('{{- include "graceful-shutdown-operator.labels" . | nindent § }}')] = '';
}

/** The whole template file of one source. */
function renderTemplate(source: TemplateSource, read: (file: string) => string): string {
  const mark = new Marker();
  const documents: string[] = [];
  for (const file of source.files) {
    for (const doc of parseAllDocuments(read(file))) {
      const object = doc.toJS() as Obj | null;
      if (object === null) continue;
      source.edit?.(object, mark);
      addLabels(object, mark);
      documents.push(stringify(object, { lineWidth: 0, minContentWidth: 0 }));
    }
  }
  let text = escapeTemplates(documents.join('---\n'));
  // A namespace that is a whole scalar is quoted (a legal name such as `2024` or `true` would
  // otherwise be read as a number or a boolean); inside a longer string it is written as it is.
  text = text
    .replace(
      new RegExp(`^( *(?:- )?(?:[\\w.-]+: )?)${KUSTOMIZE_NAMESPACE}$`, 'gm'),
      '$1{{ .Release.Namespace | quote }}',
    )
    .replaceAll(KUSTOMIZE_NAMESPACE, () => '{{ .Release.Namespace }}');
  // Whole lines: `<indent>__HELM_LINE_n__: ""` (a map key) or `<indent>- __HELM_LINE_n__: ""`
  // (a list item), replaced by the template lines, each starting where the key (or dash) does.
  text = text.replace(/^( *)(?:- )?(__HELM_LINE_\d+__): .*$/gm, (_line, indent: string, key: string) =>
    (mark.lines.get(key) ?? '')
      .replace(/§(?:\+(\d+))?/g, (_token, extra: string | undefined) =>
        String(indent.length + Number(extra ?? 0)),
      )
      .split('\n')
      .map((l) => `${indent}${l}`)
      .join('\n'),
  );
  // Scalars; `resources` is a whole block from the values.
  text = text.replace(
    /^( *)([\w.-]+): (__HELM_VALUE_\d+__)$/gm,
    (_line, indent: string, key: string, marker: string) => {
      const expression = mark.values.get(marker) ?? '';
      if (expression !== 'RESOURCES') return `${indent}${key}: ${expression}`;
      return `${indent}${key}:\n${indent}  {{- toYaml .Values.resources | nindent ${indent.length + 2} }}`;
    },
  );
  for (const [marker, expression] of mark.values) text = text.replaceAll(marker, expression);
  const header = `{{- /* Generated by \`npm run generate\` (hack/helm-chart.ts) from ${source.files.join(', ')}: edit those, not this file. */}}\n`;
  const body = source.when ? `{{- if ${source.when} }}\n${text}{{- end }}\n` : text;
  return header + body;
}

/** The Grafana dashboard's ConfigMap: the JSON read from the chart's files/ (a copy of config/grafana's). */
const DASHBOARD_TEMPLATE = `{{- /* Generated by \`npm run generate\` (hack/helm-chart.ts) from config/grafana: edit that, not this file. */}}
{{- if .Values.grafana.dashboard.enabled }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: graceful-shutdown-operator-dashboard
  namespace: {{ .Release.Namespace | quote }}
  labels:
    grafana_dashboard: "1"
    app.kubernetes.io/part-of: graceful-shutdown-operator
    {{- include "graceful-shutdown-operator.labels" . | nindent 4 }}
data:
  dashboard.json: |
    {{- .Files.Get "files/dashboard.json" | nindent 4 }}
{{- end }}
`;

/** Every generated file of the chart, by its path relative to the repository root. */
export function helmChartFiles(
  repoRoot: string,
  generated: ReadonlyMap<string, string> = new Map(),
): Map<string, string> {
  // A file generated in the same run (crds/) is read as generated, not as it is on disk.
  const read = (file: string) => generated.get(file) ?? readFileSync(join(repoRoot, file), 'utf8');
  const files = new Map<string, string>();
  for (const source of TEMPLATES)
    files.set(`${CHART_DIR}/templates/${source.template}`, renderTemplate(source, read));
  files.set(`${CHART_DIR}/templates/dashboard.yaml`, DASHBOARD_TEMPLATE);
  files.set(`${CHART_DIR}/files/dashboard.json`, read('config/grafana/dashboard.json'));
  return files;
}
