// Shared by the controllers' unit tests: fake informer caches, object builders, and what a
// server-side apply does to a Deployment. Not part of the build.
import type { KubernetesObject, V1Deployment, V1Namespace } from '@kubernetes/client-node';
import type { ApplyConfiguration } from '../policy/ownership.ts';
import type { PolicyObject } from './view.ts';

/** The informer methods the view and the reconcilers read, over a plain map. */
export class FakeInformer<T extends KubernetesObject> {
  readonly objects = new Map<string, T>();
  readonly #keyOf: (object: T) => string;
  constructor(keyOf: (object: T) => string, objects: T[] = []) {
    this.#keyOf = keyOf;
    for (const object of objects) this.put(object);
  }
  put(object: T): void {
    this.objects.set(this.#keyOf(object), object);
  }
  delete(key: string): void {
    this.objects.delete(key);
  }
  get(key: string): T | undefined {
    return this.objects.get(key);
  }
  list(): T[] {
    return [...this.objects.values()];
  }
  keys(): string[] {
    return [...this.objects.keys()];
  }
}

export const namespaced = (o: KubernetesObject) => `${o.metadata?.namespace}/${o.metadata?.name}`;
export const clusterScoped = (o: KubernetesObject) => o.metadata?.name ?? '';

export function policyObject(name: string, spec: unknown, generation = 1): PolicyObject {
  return {
    apiVersion: 'gracefulshutdown.dev/v1alpha1',
    kind: 'GracefulShutdownPolicy',
    metadata: { name, generation, resourceVersion: '1' },
    spec,
  };
}

export function namespace(name: string): V1Namespace {
  return { metadata: { name, labels: { 'kubernetes.io/metadata.name': name } } };
}

/**
 * The Deployment after an apply of `config`, as the apiserver would store it: written fields
 * and pod-template annotations merged in, the record annotation set, the generation bumped and
 * observed.
 */
export function afterApply(original: V1Deployment, config: ApplyConfiguration): V1Deployment {
  const result = structuredClone(original);
  const generation = (original.metadata?.generation ?? 0) + 1;
  result.metadata = {
    ...result.metadata,
    generation,
    annotations: { ...result.metadata?.annotations, ...config.metadata.annotations },
  };
  result.status = { ...result.status, observedGeneration: generation };
  const template = result.spec?.template;
  const podSpec = template?.spec;
  if (!template || !podSpec) throw new Error('no pod spec');
  const annotations = config.spec?.template.metadata?.annotations;
  if (annotations)
    template.metadata = {
      ...template.metadata,
      annotations: { ...template.metadata?.annotations, ...annotations },
    };
  const written = config.spec?.template.spec ?? {};
  if (typeof written.terminationGracePeriodSeconds === 'number')
    podSpec.terminationGracePeriodSeconds = written.terminationGracePeriodSeconds;
  for (const c of (written.containers ?? []) as {
    name: string;
    readinessProbe?: object;
    lifecycle?: object;
  }[]) {
    const target = podSpec.containers.find((x) => x.name === c.name);
    if (!target) throw new Error(`no container ${c.name}`);
    if (c.readinessProbe) target.readinessProbe = c.readinessProbe;
    if (c.lifecycle) target.lifecycle = { ...target.lifecycle, ...c.lifecycle };
  }
  return result;
}
