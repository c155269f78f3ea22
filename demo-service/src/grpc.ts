/**
 * demo-service as a gRPC server (DEMO_PROTOCOL=grpc): the standard health service
 * (grpc.health.v1.Health, from grpc-health-check), which the kubelet's grpc readiness probe asks.
 * A test fixture for the operator's probe choice: a gRPC port gets no httpGet probe
 * (operator/src/policy/protocols.ts). On drain it reports NOT_SERVING, so readiness fails while
 * the endpoints are updated, then stops taking calls and lets the running ones finish.
 */
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation, service as healthService } from 'grpc-health-check';

export interface GrpcDemo {
  server: grpc.Server;
  health: HealthImplementation;
  /** Binds host:port (0: any free port); resolves with the port bound, then serves. */
  listen(port: number, host: string): Promise<number>;
  /** NOT_SERVING, then a graceful shutdown; forced after `deadlineMs`. */
  drain(deadlineMs: number): Promise<'clean' | 'forced'>;
}

export function createGrpcDemo(): GrpcDemo {
  const server = new grpc.Server();
  // '' is the server as a whole, which a probe without `service` asks about.
  const health = new HealthImplementation({ '': 'SERVING' });
  health.addToServer(server);
  return {
    server,
    health,
    listen: (port, host) =>
      new Promise((resolve, reject) => {
        server.bindAsync(
          `${host.includes(':') ? `[${host}]` : host}:${port}`,
          grpc.ServerCredentials.createInsecure(),
          (err, bound) => (err ? reject(err) : resolve(bound)),
        );
      }),
    drain: (deadlineMs) => {
      health.setStatus('', 'NOT_SERVING');
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve('forced');
        }, deadlineMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve('clean');
        });
      });
    },
  };
}

/** A client of the health service (tests, and a check by hand). */
export function healthClient(address: string): grpc.Client & {
  check(
    request: { service: string },
    callback: (err: grpc.ServiceError | null, response?: { status: string }) => void,
  ): void;
} {
  const Client = grpc.makeGenericClientConstructor(healthService as grpc.ServiceDefinition, 'Health');
  return new Client(address, grpc.credentials.createInsecure()) as never;
}
