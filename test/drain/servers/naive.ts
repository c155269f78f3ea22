/**
 * The common mistake: exit as soon as SIGTERM arrives. In-flight requests are cut, and new
 * connections still routed here during endpoint propagation are refused.
 */
import { createServer } from 'node:http';
import { handleRequest, host, port } from './common.ts';

createServer(handleRequest).listen(port, host);
process.on('SIGTERM', () => process.exit(0));
