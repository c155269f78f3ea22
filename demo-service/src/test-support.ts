/**
 * Test helpers for demo-service (excluded from the build): raw TCP clients that send what no HTTP
 * client library would (malformed, slow, never finished requests), and polling without fixed sleeps.
 */
import { connect, type Socket } from 'node:net';

/** Polls until the condition holds (a request has reached the server, ...); never a fixed sleep. */
export async function until(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export interface RawClient {
  socket: Socket;
  /** Everything received so far (latin1). */
  readonly received: string;
  /** True once the connection is closed, by either side. */
  readonly isClosed: boolean;
  /** Resolves with everything received once the connection is closed; rejects after `timeoutMs`. */
  closed(timeoutMs?: number): Promise<string>;
}

const openClients = new Set<Socket>();

/** Opens a TCP connection to 127.0.0.1:port and sends `data` (nothing when empty). */
export async function rawClient(port: number, data = ''): Promise<RawClient> {
  const socket = connect({ host: '127.0.0.1', port });
  openClients.add(socket);
  let received = '';
  let isClosed = false;
  socket.setEncoding('latin1');
  socket.on('data', (chunk: string) => {
    received += chunk;
  });
  // A reset is one way for the server to close; what was received says the rest.
  socket.on('error', () => {});
  socket.once('close', () => {
    isClosed = true;
    openClients.delete(socket);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('close', () => reject(new Error('connection closed before it was established')));
  });
  if (data) socket.write(data);
  return {
    socket,
    get received() {
      return received;
    },
    get isClosed() {
      return isClosed;
    },
    async closed(timeoutMs = 5000) {
      await until(() => isClosed, 'the server closes the connection', timeoutMs);
      return received;
    },
  };
}

/** Sends `data` on a connection of its own and resolves with all the server sent before closing it. */
export async function exchange(port: number, data: string): Promise<string> {
  return (await rawClient(port, data)).closed();
}

/** The status code of the first response in raw HTTP/1.1 text, undefined when there is none. */
export function statusOf(text: string): number | undefined {
  const match = /^HTTP\/1\.1 (\d{3}) /.exec(text);
  return match ? Number(match[1]) : undefined;
}

/** Destroys every raw client still open: call in afterEach. */
export function destroyRawClients(): void {
  for (const socket of openClients) socket.destroy();
  openClients.clear();
}
