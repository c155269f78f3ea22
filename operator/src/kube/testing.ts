// Helpers for tests of the kube adapters against nock.
import { KubeConfig } from '@kubernetes/client-node';

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
