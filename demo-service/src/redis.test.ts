import * as net from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { createRedisDemo, parseCommands, reply } from './redis.ts';

describe('RESP parsing and replies', () => {
  test('arrays of bulk strings and inline commands; an incomplete tail is kept', () => {
    expect(
      parseCommands('*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nPING\r\n$2\r\nhi\r\nPING\r\n*1\r\n$4\r\nPI'),
    ).toEqual({
      commands: [['PING'], ['PING', 'hi'], ['PING']],
      rest: '*1\r\n$4\r\nPI',
    });
    expect(parseCommands('QUIT')).toEqual({ commands: [], rest: 'QUIT' });
  });

  test('PING -> +PONG, PING msg -> the message, QUIT -> +OK, anything else an error', () => {
    expect(reply(['PING'])).toBe('+PONG\r\n');
    expect(reply(['ping'])).toBe('+PONG\r\n');
    expect(reply(['PING', 'héllo'])).toBe('$6\r\nhéllo\r\n');
    expect(reply(['QUIT'])).toBe('+OK\r\n');
    expect(reply(['GET', 'k'])).toBe("-ERR unknown command 'GET'\r\n");
  });
});

describe('the Redis-protocol demo server', () => {
  let server: net.Server | undefined;
  afterEach(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())));

  test('answers PING with +PONG over TCP, split across packets, and QUIT closes', async () => {
    server = createRedisDemo();
    await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    const socket = net.connect(port, '127.0.0.1');
    let received = '';
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      received += chunk;
    });
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write('*1\r\n$4\r\nPI');
    await new Promise((resolve) => setImmediate(resolve));
    socket.write('NG\r\nQUIT\r\n');
    await closed;
    expect(received).toBe('+PONG\r\n+OK\r\n');
  });
});
