// Helpers for tests of the kube adapters against nock.
import { KubeConfig } from '@kubernetes/client-node';
import { ConflictError } from '../runtime/controller.ts';
import type { SecretStore, StoredSecret } from './secret-store.ts';

/** The apiserver URL nock intercepts. */
export const testServer = 'https://kube.test';

export const jsonHeaders = { 'content-type': 'application/json' };

/** A kubeconfig pointing at testServer, without credentials. */
export function testKubeConfig(): KubeConfig {
  const config = new KubeConfig();
  config.loadFromOptions({
    clusters: [{ name: 'test', server: testServer }],
    users: [{ name: 'test' }],
    contexts: [{ name: 'test', cluster: 'test', user: 'test' }],
    currentContext: 'test',
  });
  return config;
}

export interface HeldReply {
  /** A nock reply function: answers `status` and `body`, once released. */
  reply: () => Promise<[number, object, Record<string, string>]>;
  /** Settles when the request has reached the server (it is in flight from then on). */
  arrived: Promise<void>;
  release: () => void;
}

/** A reply the server holds back until the test releases it: the request stays in flight. */
export function holdReply(status: number, body: object): HeldReply {
  let release = () => {};
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  let arrive = () => {};
  const arrived = new Promise<void>((resolve) => {
    arrive = resolve;
  });
  return {
    arrived,
    release,
    reply: async () => {
      arrive();
      await released;
      return [status, body, jsonHeaders];
    },
  };
}

/** A Secret with the apiserver's preconditions: create fails if it exists, replace if it moved. */
export class MemorySecretStore implements SecretStore {
  readonly description: string;
  constructor(description = 'Secret ns/tls') {
    this.description = description;
  }
  secret: StoredSecret | undefined;
  writes = 0;
  #version = 0;
  async read(): Promise<StoredSecret | undefined> {
    return this.secret && { data: { ...this.secret.data }, resourceVersion: this.secret.resourceVersion };
  }
  async create(data: Record<string, string>): Promise<void> {
    if (this.secret) throw new ConflictError('exists');
    this.#store(data);
  }
  async replace(data: Record<string, string>, _type: string, resourceVersion: string): Promise<void> {
    if (this.secret?.resourceVersion !== resourceVersion) throw new ConflictError('moved');
    this.#store(data);
  }
  #store(data: Record<string, string>): void {
    this.writes++;
    this.secret = { data, resourceVersion: String(++this.#version) };
  }
}
