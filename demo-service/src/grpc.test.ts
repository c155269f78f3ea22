import { afterEach, describe, expect, test } from 'vitest';
import { createGrpcDemo, type GrpcDemo, healthClient } from './grpc.ts';

function check(address: string, service = ''): Promise<string> {
  const client = healthClient(address);
  return new Promise((resolve, reject) =>
    client.check({ service }, (err, response) => {
      client.close();
      if (err) reject(err);
      else resolve(response?.status ?? '');
    }),
  );
}

describe('the gRPC demo server (grpc.health.v1.Health)', () => {
  let demo: GrpcDemo | undefined;
  afterEach(async () => {
    await demo?.drain(1000);
    demo = undefined;
  });

  test('answers the health check SERVING for the server as a whole, as the kubelet grpc probe asks', async () => {
    demo = createGrpcDemo();
    const port = await demo.listen(0, '127.0.0.1');
    expect(port).toBeGreaterThan(0);
    await expect(check(`127.0.0.1:${port}`)).resolves.toBe('SERVING');
    // An unknown service name is NOT_FOUND, as the standard service defines it.
    await expect(check(`127.0.0.1:${port}`, 'other')).rejects.toMatchObject({ code: 5 });
  });

  test('on drain it reports NOT_SERVING, then stops', async () => {
    demo = createGrpcDemo();
    const port = await demo.listen(0, '127.0.0.1');
    demo.health.setStatus('', 'NOT_SERVING');
    await expect(check(`127.0.0.1:${port}`)).resolves.toBe('NOT_SERVING');
    await expect(demo.drain(1000)).resolves.toBe('clean');
    demo = undefined;
  });
});
