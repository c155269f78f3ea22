/**
 * Packaging checks without a Docker engine or a cluster: the Dockerfile parsed with
 * dockerfile-ast, the config/demo manifests parsed as YAML and cross-checked.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { DockerfileParser, type From, type Instruction } from 'dockerfile-ast';
import { describe, expect, test } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { parsePolicy } from '../../operator/src/api/policy.ts';
import { drainDeadlineMs } from '../src/drain.ts';

const dockerfile = DockerfileParser.parse(readFileSync('Dockerfile', 'utf8'));
const froms = dockerfile.getFROMs();
const stageNames = froms.map((f) => f.getBuildStage());
const argDefaults = new Map(
  dockerfile.getInitialARGs().map((arg) => [arg.getProperty()?.getName(), arg.getProperty()?.getValue()]),
);

/** Instructions of one stage: from its FROM up to the next FROM. */
function stageInstructions(name: string): Instruction[] {
  const all = dockerfile.getInstructions();
  const start = all.findIndex((i) => i.getKeyword() === 'FROM' && (i as From).getBuildStage() === name);
  const end = all.findIndex((i, index) => index > start && i.getKeyword() === 'FROM');
  return all.slice(start, end === -1 ? undefined : end);
}

/** The stage chain of a target, the target first, following FROM <stage>. */
function chain(name: string): string[] {
  const from = froms.find((f) => f.getBuildStage() === name);
  const base = from?.getImageName() ?? '';
  return stageNames.includes(base) ? [name, ...chain(base)] : [name];
}

function baseImage(name: string): string {
  const root = froms.find((f) => f.getBuildStage() === chain(name).at(-1));
  const image = root?.getImage() ?? '';
  const arg = /^\$\{?(\w+)\}?$/.exec(image)?.[1];
  return arg ? (argDefaults.get(arg) ?? '') : image;
}

function execForm(instruction: Instruction | undefined): string[] {
  const content = instruction?.getArgumentsContent() ?? '';
  return JSON.parse(content) as string[];
}

describe('Dockerfile', () => {
  test('is multi-stage with a target for demo-service and one for the operator', () => {
    expect(froms.length).toBeGreaterThanOrEqual(3);
    expect(stageNames).toEqual(expect.arrayContaining(['build', 'demo-service', 'operator']));
    for (const copy of dockerfile.getCOPYs()) {
      const from = copy.getFromFlag()?.getValue();
      if (from) expect(stageNames).toContain(from);
    }
  });

  test.each(['demo-service', 'operator'])(
    '%s runs Node 24 as a non-root user with node as the entrypoint',
    (target) => {
      expect(baseImage(target)).toMatch(/(^node:24-.*slim)|(distroless\/nodejs24)/);
      const instructions = chain(target).flatMap(stageInstructions);
      const user =
        instructions
          .filter((i) => i.getKeyword() === 'USER')
          .at(-1)
          ?.getArgumentsContent() ?? '';
      expect(user).toMatch(/^[1-9]\d*(:\d+)?$/); // numeric so runAsNonRoot can be verified, never 0
      const entrypoint = execForm(instructions.filter((i) => i.getKeyword() === 'ENTRYPOINT').at(-1));
      expect(entrypoint[0]).toMatch(/(^|\/)node$/);
      expect(entrypoint.join(' ')).not.toMatch(/\bnpm\b|\byarn\b|\bsh\b/);
      // The script is what the build emits: tsconfig.build.json keeps paths under dist/.
      const script = entrypoint[1] ?? '';
      expect(script).toBe(`dist/${target}/src/main.js`);
      if (target === 'demo-service') expect(existsSync('demo-service/src/main.ts')).toBe(true);
    },
  );

  test('never starts through npm', () => {
    for (const instruction of dockerfile.getInstructions()) {
      if (['CMD', 'ENTRYPOINT'].includes(instruction.getKeyword())) {
        expect(instruction.getArgumentsContent()).not.toMatch(/npm/);
      }
    }
  });
});

describe('config/demo', () => {
  type Manifest = {
    kind: string;
    metadata: { name: string; namespace?: string };
    spec: Record<string, unknown>;
  } & Record<string, unknown>;
  const kustomization = parseAllDocuments(
    readFileSync('config/demo/kustomization.yaml', 'utf8'),
  )[0]?.toJS() as {
    resources: string[];
    namespace?: string;
  };
  const manifests = kustomization.resources.flatMap((file) =>
    parseAllDocuments(readFileSync(`config/demo/${file}`, 'utf8')).map((doc) => doc.toJS() as Manifest),
  );
  const byKind = (kind: string) => manifests.find((m) => m.kind === kind) as Manifest;

  test('the kustomization lists the namespace, Deployment, Service and policy, and stamps no namespace', () => {
    expect(manifests.map((m) => m.kind).sort()).toEqual(
      ['Deployment', 'GracefulShutdownPolicy', 'Namespace', 'Service'].sort(),
    );
    expect(kustomization.namespace).toBeUndefined();
  });

  test('Deployment, Service and policy select the same pods, and the env agrees with the pod spec', () => {
    const deployment = byKind('Deployment');
    const service = byKind('Service');
    const namespace = byKind('Namespace').metadata.name;
    expect(deployment.metadata.namespace).toBe(namespace);
    expect(service.metadata.namespace).toBe(namespace);
    const template = deployment.spec.template as {
      metadata: { labels: Record<string, string>; annotations: Record<string, string> };
      spec: {
        terminationGracePeriodSeconds: number;
        containers: {
          env: { name: string; value?: string; valueFrom?: { fieldRef: { fieldPath: string } } }[];
          ports: { name: string }[];
          lifecycle: { preStop: { sleep: { seconds: number } } };
          readinessProbe: { httpGet: { path: string } };
          livenessProbe: { httpGet: { path: string } };
        }[];
      };
    };
    expect(template.metadata.labels).toMatchObject(service.spec.selector as object);
    expect(template.metadata.labels).toMatchObject(
      (deployment.spec.selector as { matchLabels: object }).matchLabels,
    );
    const [container] = template.spec.containers;
    if (!container) throw new Error('no container');
    // A value from the downward API is the template's own annotation (which the operator keeps
    // equal to what it sets): resolve it the way the kubelet does.
    const annotation = (path: string) =>
      template.metadata.annotations[/^metadata\.annotations\['(.+)'\]$/.exec(path)?.[1] ?? ''];
    const env = Object.fromEntries(
      container.env.map((e) => [e.name, e.valueFrom ? annotation(e.valueFrom.fieldRef.fieldPath) : e.value]),
    );
    expect(Number(env.TERMINATION_GRACE_PERIOD_SECONDS)).toBe(template.spec.terminationGracePeriodSeconds);
    expect(Number(env.PRESTOP_SECONDS)).toBe(container.lifecycle.preStop.sleep.seconds);
    // preStop already covers endpoint propagation.
    expect(Number(env.PROPAGATION_DELAY_SECONDS)).toBe(0);
    const deadline = drainDeadlineMs({
      terminationGracePeriodSeconds: Number(env.TERMINATION_GRACE_PERIOD_SECONDS),
      preStopSeconds: Number(env.PRESTOP_SECONDS),
      marginSeconds: Number(env.DRAIN_MARGIN_SECONDS),
    });
    expect(deadline).toBeGreaterThan(10_000);
    expect(container.readinessProbe.httpGet.path).toBe('/readyz');
    expect(container.livenessProbe.httpGet.path).toBe('/healthz');
    const ports = (service.spec.ports as { targetPort: string }[]).map((p) => p.targetPort);
    expect(container.ports.map((p) => p.name)).toEqual(expect.arrayContaining(ports));
  });

  test('the policy is valid for the operator API and matches demo-service', () => {
    const policy = byKind('GracefulShutdownPolicy');
    expect(policy.metadata.namespace).toBeUndefined(); // cluster-scoped
    const parsed = parsePolicy(policy);
    expect(parsed.ok ? [] : parsed.errors).toEqual([]);
    const spec = policy.spec as {
      mode: string;
      deploymentSelector: { matchLabels: Record<string, string> };
      observedLatency: { preset: string };
    };
    expect(spec.mode).toBe('Enforce');
    expect(spec.deploymentSelector.matchLabels).toEqual({ app: 'demo-service' });
    // The preset's histogram is one the Deployment has demo-service export.
    expect(spec.observedLatency.preset).toBe('OpenTelemetry');
    const template = byKind('Deployment').spec.template as {
      spec: { containers: { env: { name: string; value?: string }[] }[] };
    };
    const env = template.spec.containers[0]?.env ?? [];
    const shapes = env.find((e) => e.name === 'METRIC_SHAPES')?.value?.split(',');
    expect(shapes).toContain('opentelemetry');
  });
});

describe('config/manager', () => {
  const manager = parseAllDocuments(readFileSync('config/manager/manager.yaml', 'utf8'))
    .map(
      (doc) =>
        doc.toJS() as {
          kind?: string;
          spec?: { template?: { spec?: { containers?: { command?: string[] }[] } } };
        },
    )
    .find((m) => m.kind === 'Deployment');

  test("the operator container starts through the image's ENTRYPOINT (distroless has no node on PATH)", () => {
    const container = manager?.spec?.template?.spec?.containers?.[0];
    expect(container).toBeDefined();
    expect(container?.command).toBeUndefined();
    const entrypoint = execForm(stageInstructions('operator').find((i) => i.getKeyword() === 'ENTRYPOINT'));
    expect(entrypoint[0]).toMatch(/^\//);
    expect(entrypoint[1]).toBe('dist/operator/src/main.js');
  });
});

describe('npm run build (what the Dockerfile copies into the image)', () => {
  test('emits both entry points, and the operator starts from the emitted JavaScript', () => {
    const outDir = mkdtempSync(join(process.cwd(), '.build-check-'));
    try {
      execFileSync(process.execPath, [
        'node_modules/typescript/bin/tsc',
        '-p',
        'tsconfig.build.json',
        '--outDir',
        outDir,
      ]);
      expect(existsSync(join(outDir, 'demo-service/src/main.js'))).toBe(true);
      expect(existsSync(join(outDir, 'operator/src/runtime/testing.js'))).toBe(false);
      const help = execFileSync(process.execPath, [join(outDir, 'operator/src/main.js'), '--help'], {
        encoding: 'utf8',
      });
      expect(help).toContain('--leader-elect');
    } finally {
      rmSync(outDir, { recursive: true, force: true });
    }
  }, 120_000);
});
