/**
 * A loopback TCP proxy that routes like kube-proxy does, lag included.
 *
 * Each new client connection is pinned to one backend (round-robin over the routable ones) and
 * stays there until either side closes it: kube-proxy keeps established connections on a removed
 * endpoint on purpose (kubernetes/kubernetes#100755). When a backend is terminated, it stays
 * routable for new connections for `propagationDelayMs` more, the time endpoint removal takes
 * to reach every node and load balancer. A backend that refuses or resets makes the client's
 * connection reset too, as a DNAT to a dead pod does.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

export interface ProxyBackend {
  id: string;
  port: number;
  /** routable: gets new connections; terminating: still gets them until the lag is over; removed: only old ones. */
  state: 'routable' | 'terminating' | 'removed';
  connectionsTotal: number;
}

export class EndpointProxy {
  readonly propagationDelayMs: number;
  private readonly backends: ProxyBackend[] = [];
  private readonly backendByClientPort = new Map<number, ProxyBackend>();
  private readonly sockets = new Set<Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private server: Server | undefined;
  private next = 0;
  /** Connections that found no routable backend and were reset. */
  unroutable = 0;

  constructor(options: { propagationDelayMs: number }) {
    this.propagationDelayMs = options.propagationDelayMs;
  }

  async listen(): Promise<number> {
    const server = createServer({ allowHalfOpen: true, noDelay: true }, (client) => this.route(client));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('proxy has no TCP address');
    return address.port;
  }

  addBackend(id: string, port: number): void {
    this.backends.push({ id, port, state: 'routable', connectionsTotal: 0 });
  }

  /** The pod is being deleted: endpoint removal starts now and takes effect after the lag. */
  terminate(id: string): void {
    const backend = this.backends.find((b) => b.id === id);
    if (backend?.state !== 'routable') return;
    backend.state = 'terminating';
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      backend.state = 'removed';
    }, this.propagationDelayMs);
    this.timers.add(timer);
  }

  /** Which backend served the client connection whose local port is `clientPort`. */
  backendOf(clientPort: number | undefined): string | undefined {
    return clientPort === undefined ? undefined : this.backendByClientPort.get(clientPort)?.id;
  }

  backendList(): readonly ProxyBackend[] {
    return this.backends;
  }

  async close(): Promise<void> {
    for (const timer of this.timers) clearTimeout(timer);
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private pick(): ProxyBackend | undefined {
    const candidates = this.backends.filter((b) => b.state !== 'removed');
    if (candidates.length === 0) return undefined;
    this.next = (this.next + 1) % candidates.length;
    return candidates[this.next];
  }

  private route(client: Socket): void {
    const backend = this.pick();
    if (!backend) {
      this.unroutable += 1;
      client.resetAndDestroy();
      return;
    }
    backend.connectionsTotal += 1;
    if (client.remotePort !== undefined) this.backendByClientPort.set(client.remotePort, backend);
    const upstream = connect({ host: '127.0.0.1', port: backend.port, allowHalfOpen: true, noDelay: true });
    this.sockets.add(client);
    this.sockets.add(upstream);
    // pipe() forwards FIN both ways (half-close), so a server's close reaches the client as is.
    client.pipe(upstream);
    upstream.pipe(client);
    upstream.on('error', () => {
      if (!client.destroyed) client.resetAndDestroy();
    });
    client.on('error', () => {
      if (!upstream.destroyed) upstream.resetAndDestroy();
    });
    upstream.on('close', () => {
      this.sockets.delete(upstream);
      if (!client.destroyed && client.writableEnded === false) client.end();
    });
    client.on('close', () => {
      this.sockets.delete(client);
      if (!upstream.destroyed && upstream.writableEnded === false) upstream.end();
    });
  }
}
