/**
 * demo-service as a Redis-protocol server (DEMO_PROTOCOL=redis): answers PING with +PONG (and
 * PING <message> with it) in RESP, QUIT with +OK, anything else with an error. Hand-written on
 * node:net because it is a test fixture, not a Redis: the operator must give such a port a
 * tcpSocket probe, never an httpGet one (operator/src/policy/protocols.ts), and a real client
 * library would bring nothing the e2e test needs.
 */
import * as net from 'node:net';

/** One RESP command: an array of bulk strings (`*1\r\n$4\r\nPING\r\n`) or an inline line (`PING\r\n`). */
export function parseCommands(buffer: string): { commands: string[][]; rest: string } {
  const commands: string[][] = [];
  let at = 0;
  while (at < buffer.length) {
    if (buffer[at] !== '*') {
      const end = buffer.indexOf('\r\n', at);
      if (end < 0) break;
      const words = buffer.slice(at, end).trim().split(/\s+/).filter(Boolean);
      if (words.length > 0) commands.push(words);
      at = end + 2;
      continue;
    }
    const headerEnd = buffer.indexOf('\r\n', at);
    if (headerEnd < 0) break;
    const count = Number(buffer.slice(at + 1, headerEnd));
    let next = headerEnd + 2;
    const args: string[] = [];
    let complete = true;
    for (let i = 0; i < count; i++) {
      const lengthEnd = buffer.indexOf('\r\n', next);
      if (lengthEnd < 0 || buffer[next] !== '$') {
        complete = false;
        break;
      }
      const length = Number(buffer.slice(next + 1, lengthEnd));
      const start = lengthEnd + 2;
      if (buffer.length < start + length + 2) {
        complete = false;
        break;
      }
      args.push(buffer.slice(start, start + length));
      next = start + length + 2;
    }
    if (!complete) break;
    commands.push(args);
    at = next;
  }
  return { commands, rest: buffer.slice(at) };
}

/** The RESP reply to one command. */
export function reply(command: string[]): string {
  const [name = '', ...args] = command;
  switch (name.toUpperCase()) {
    case 'PING':
      return args[0] === undefined ? '+PONG\r\n' : `$${Buffer.byteLength(args[0])}\r\n${args[0]}\r\n`;
    case 'QUIT':
      return '+OK\r\n';
    default:
      return `-ERR unknown command '${name.replaceAll(/[\r\n]/g, ' ')}'\r\n`;
  }
}

export function createRedisDemo(): net.Server {
  return net.createServer((socket) => {
    socket.setEncoding('latin1');
    let pending = '';
    socket.on('data', (chunk: string) => {
      const { commands, rest } = parseCommands(pending + chunk);
      pending = rest;
      for (const command of commands) {
        socket.write(reply(command));
        if (command[0]?.toUpperCase() === 'QUIT') socket.end();
      }
    });
    socket.on('error', () => socket.destroy());
  });
}
