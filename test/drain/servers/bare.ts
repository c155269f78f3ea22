/** Bare node:http: no shutdown handling at all (SIGTERM's default action kills it). Throughput baseline. */
import { createServer } from 'node:http';
import { handleRequest, host, port } from './common.ts';

createServer(handleRequest).listen(port, host);
