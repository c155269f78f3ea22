#!/usr/bin/env node
// The `gsp` command. The Node.js version is checked before anything else is loaded: on an older
// Node.js, gsp would fail in ways that say nothing of the cause.
const MINIMUM_NODE_MAJOR = 24;

if (Number(process.versions.node.split('.')[0]) < MINIMUM_NODE_MAJOR) {
  process.stderr.write(`gsp needs Node.js ${MINIMUM_NODE_MAJOR} or newer; this is ${process.version}\n`);
  process.exitCode = 2;
} else {
  const { run, processIo } = await import('./gsp.ts');
  process.exitCode = await run(process.argv.slice(2), processIo);
}
