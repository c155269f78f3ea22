/**
 * A loopback TCP proxy that routes like kube-proxy does, lag included.
 *
 * Each new client connection is pinned to one backend (round-robin over the routable ones) and
 * stays there until either side closes it: kube-proxy keeps established connections on a removed
 * endpoint on purpose (kubernetes/kubernetes#100755). When a backend is terminated, it stays
 * routable for new connections for `propagationDelayMs` more, the time endpoint removal takes
 * to reach every node and load balancer. A backend that refuses or resets makes the client's
 * connection reset too, as a DNAT to a dead pod does.
 *
 * The client learns which backend its connection reached when the connection is made
 * (`backendOfConnection`), never later by its port, which a later connection may reuse.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

export interface ProxyBackend {
  id: string;
  port: number;
  /** routable: gets new connections; terminating: still gets them until the lag is over; removed: only old ones. */
  state: 'routable' | 'terminating' | 'removed';
  connectionsTotal: number;
}

/** An accepted client connection not yet claimed by its client side. */
interface Accepted {
  /** performance.now() at accept. */
  at: number;
  backend: string | undefined;
}

/** A client waiting for its connection to be accepted. */
type Claim = (backend: string | undefined) => void;

export class EndpointProxy {
  readonly propagationDelayMs: number;
  private readonly backends: ProxyBackend[] = [];
  /** By client port, oldest first. */
  private readonly unclaimed = new Map<number, Accepted[]>();
  private readonly claims = new Map<number, Claim[]>();
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

  /**
   * The backend of the client connection from local port `clientPort`, asked by the client when
   * its connection is made. `since` (performance.now()) was taken after the client created the
   * socket: a connection accepted before is an earlier one from the same port. Each accepted
   * connection is handed out once. Waits for the accept if it has not happened yet; undefined
   * for a connection that found no backend, or when none comes within `timeoutMs`.
   */
  backendOfConnection(clientPort: number, since: number, timeoutMs = 5000): Promise<string | undefined> {
    const queue = this.unclaimed.get(clientPort) ?? [];
    // Older ones were never claimed (a client that did not ask); no later connection can be them.
    while (queue.length > 0 && (queue[0] as Accepted).at < since) queue.shift();
    const accepted = queue.shift();
    if (queue.length === 0) this.unclaimed.delete(clientPort);
    if (accepted) return Promise.resolve(accepted.backend);
    return new Promise((resolve) => {
      const claim: Claim = (backend) => {
        clearTimeout(timer);
        const others = (this.claims.get(clientPort) ?? []).filter((c) => c !== claim);
        if (others.length > 0) this.claims.set(clientPort, others);
        else this.claims.delete(clientPort);
        resolve(backend);
      };
      const timer = setTimeout(() => claim(undefined), timeoutMs);
      this.claims.set(clientPort, [...(this.claims.get(clientPort) ?? []), claim]);
    });
  }

  backendList(): readonly ProxyBackend[] {
    return this.backends;
  }

  async close(): Promise<void> {
    for (const claim of [...this.claims.values()].flat()) claim(undefined);
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

  /** Hands the backend of a just-accepted connection to its client's claim, or keeps it for it. */
  private accepted(clientPort: number | undefined, backend: string | undefined): void {
    if (clientPort === undefined) return;
    // A waiting claim asked after its socket was created, so this connection, accepted later, is its own.
    const claim = this.claims.get(clientPort)?.[0];
    if (claim) {
      claim(backend);
      return;
    }
    const queue = this.unclaimed.get(clientPort) ?? [];
    queue.push({ at: performance.now(), backend });
    this.unclaimed.set(clientPort, queue);
  }

  private route(client: Socket): void {
    const backend = this.pick();
    this.accepted(client.remotePort, backend?.id);
    if (!backend) {
      this.unroutable += 1;
      client.resetAndDestroy();
      return;
    }
    backend.connectionsTotal += 1;
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
