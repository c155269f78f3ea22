// gsp: the operator's verdicts offline, for CI. `gsp audit` reads manifests (files, directories,
// or - for standard input: kustomize build and helm template output pipe in) and policies, and
// reports per Deployment what the operator would say, plus the classic shutdown mistakes.
// Exit codes: 0 nothing at or above --fail-on, 1 findings at or above it, 2 usage error,
// 3 input error: nothing could be read, an invalid policy, or with --strict any unreadable part
// (otherwise a file that cannot be read or parsed is a finding, and the run goes on). docs/audit.md.
import { isUtf8 } from 'node:buffer';
import { createReadStream, type Dirent, type Stats } from 'node:fs';
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import { parseArgs } from 'node:util';
import writeFileAtomic from 'write-file-atomic';
import { parse } from 'yaml';
import { API_VERSION, GROUP, KIND, PLURAL, VERSION } from '../api/policy.ts';
import { BUILD, versionLine } from '../version.ts';
import {
  audit,
  type Finding,
  inputFinding,
  namespaceLabelsOf,
  PolicyError,
  readPolicies,
  SEVERITIES,
  type Severity,
} from './audit.ts';
import { fixManifests } from './fix.ts';
import { type Manifest, ManifestError, readInput } from './manifests.ts';
import { formatJson, formatSarif, formatTable, type OutputFormat, printable } from './output.ts';
import { runRelease } from './release.ts';
import { KUSTOMIZATION_FILES, kustomizationPatches, WORKLOAD_KINDS } from './workloads.ts';

export const EXIT = { ok: 0, findings: 1, usage: 2, input: 3 } as const;

export const usage = `usage: gsp audit [flags] <file|directory|->...
  -p, --policy <file>            a GracefulShutdownPolicy file (repeatable); policies among the
                                 manifests count too
      --cluster                  also the policies of the cluster (kubeconfig: --kubeconfig,
                                 $KUBECONFIG, ~/.kube/config)
      --kubeconfig <file>        with --cluster
  -o, --output table|json|sarif  (default table)
      --fail-on error|warning|note|none
                                 exit 1 when a finding is at least this severe (default error)
  -n, --namespace <name>         namespace of objects without one (default "default")
      --kubernetes-version <v>   the target cluster's version (default 1.34): the preStop action
      --fix                      correct the files in place (with -: print the corrected stream
                                 and report on stderr), then report what is left
      --sarif-base <dir>         SARIF locations are relative to this directory (%SRCROOT%;
                                 default the working directory)
      --stdin-name <path>        the name of standard input in SARIF (default stdin)
      --version                  print gsp's version
      --strict                   exit 3 when any input cannot be read or parsed (default: such
                                 an input is a finding, and the others are audited)
exit codes: 0 ok, 1 findings at or above --fail-on, 2 usage error, 3 nothing readable (or,
with --strict, anything unreadable) or an invalid policy
       gsp release [flags]     let go of the Deployments the operator manages (gsp release --help)`;

class UsageError extends Error {}

/** A file to read, and whether a kustomization names it as a patch. */
interface Found {
  file: string;
  patch: boolean;
  /** Of a regular file; a FIFO's is not known before it is read. */
  size?: number;
}

/** The most one input (a file, a FIFO, standard input) may hold: a manifest is far smaller. */
export const MAX_INPUT_BYTES = 64 * 1024 * 1024;

class InputTooLarge extends Error {
  readonly code = 'EFBIG';
  constructor() {
    super(`larger than ${MAX_INPUT_BYTES / 1024 / 1024} MiB`);
  }
}

const MANIFEST_FILE = /\.(ya?ml|json)$/;

/** The patches the kustomization in `dir` names (if there is one), as resolved paths. */
/**
 * The patches the kustomization in `dir` names (if there is one), as resolved paths. The
 * kustomization is read only if it is a regular file inside `root` (not a FIFO, not elsewhere).
 */
async function patchesNamedIn(
  dir: string,
  names: string[],
  inside: (target: string) => boolean,
): Promise<string[]> {
  const name = KUSTOMIZATION_FILES.find((k) => names.includes(k));
  if (!name) return [];
  const file = join(dir, name);
  const readable = await Promise.all([realpath(file), stat(file)]).then(
    ([target, info]) => inside(target) && info.isFile(),
    () => false,
  );
  if (!readable) return [];
  const text = await readFile(file, 'utf8').catch(() => '');
  let kustomization: unknown;
  try {
    kustomization = parse(text, { logLevel: 'silent' });
  } catch {
    return []; // reported when the file itself is read
  }
  return kustomizationPatches(kustomization).map((p) => resolve(dir, p));
}

/**
 * The manifest files under `path`. A path named on the command line is read whatever it is (a
 * FIFO from `<(kustomize build)` too); inside a directory, only regular files and directories
 * are: a FIFO or device would block or never end, a symlink out of the directory named would
 * read (and --fix would write) outside it, and a directory seen before is a cycle. Each of those
 * is a note, and the walk goes on.
 */
async function manifestFiles(path: string, problems: Finding[]): Promise<Found[]> {
  const info = await stat(path);
  if (!info.isDirectory())
    return [{ file: path, patch: false, ...(info.isFile() ? { size: info.size } : {}) }];
  const root = await realpath(path);
  const visited = new Set<string>();
  const patches = new Set<string>();
  const files: { file: string; target: string; size: number }[] = [];
  const skip = (source: string, why: string) => {
    problems.push(inputFinding({ source, line: 0, rule: 'InputSkipped', message: `not read: ${why}` }));
  };
  // Inside the directory named: itself, or under it (`/` has every path under it).
  const prefix = root.endsWith(sep) ? root : `${root}${sep}`;
  const inside = (target: string) => target === root || target.startsWith(prefix);
  const walk = async (dir: string, real: string): Promise<void> => {
    if (visited.has(real)) return skip(dir, `a directory already read (${real})`);
    visited.add(real);
    let entries: Dirent[];
    try {
      entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name));
    } catch (error) {
      // One directory that cannot be read is a finding; the walk goes on.
      problems.push(
        inputFinding({ source: dir, line: 0, rule: 'InputUnreadable', message: cannotRead(error) }),
      );
      return;
    }
    const names = entries.map((e) => e.name);
    for (const p of await patchesNamedIn(dir, names, inside)) patches.add(p);
    for (const entry of entries) {
      const at = join(dir, entry.name);
      const manifest = MANIFEST_FILE.test(entry.name);
      if (!entry.isDirectory() && !manifest && !entry.isSymbolicLink()) continue;
      let target: string;
      let kind: Stats;
      try {
        target = await realpath(at);
        kind = await stat(at);
      } catch (error) {
        // A dangling symlink matters only where it would name a manifest.
        if (manifest)
          problems.push(
            inputFinding({ source: at, line: 0, rule: 'InputUnreadable', message: cannotRead(error) }),
          );
        continue;
      }
      // A symlink to something that is neither a directory nor a manifest is none of gsp's business.
      if (!kind.isDirectory() && !manifest) continue;
      if (!inside(target)) {
        skip(at, `a symlink to ${target}, outside ${path}`);
        continue;
      }
      if (kind.isDirectory()) await walk(at, target);
      else if (kind.isFile()) files.push({ file: at, target, size: kind.size });
      else skip(at, 'not a regular file (a FIFO, socket or device)');
    }
  };
  await walk(path, root);
  // After the walk: a kustomization may name a patch in a directory walked before it.
  return files.map(({ file, target, size }) => ({
    file,
    patch: patches.has(resolve(file)) || patches.has(target),
    size,
  }));
}

/** A stream's bytes, up to MAX_INPUT_BYTES (standard input, a FIFO): past that, InputTooLarge. */
async function readBounded(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream) {
    total += (chunk as Buffer).length;
    if (total > MAX_INPUT_BYTES) throw new InputTooLarge();
    chunks.push(Buffer.from(chunk as Buffer));
  }
  return Buffer.concat(chunks);
}

/** A file's bytes: a regular file by its size first, anything else read with the bound. */
async function readInputFile({ file, size }: Found): Promise<Buffer> {
  if (size === undefined) return readBounded(createReadStream(file));
  if (size > MAX_INPUT_BYTES) throw new InputTooLarge();
  return readFile(file);
}

/**
 * The bytes as text, or the line of the first byte that is not UTF-8: such a file is not read
 * (kubectl refuses it too), and --fix never writes it back with replacement characters.
 */
function utf8(bytes: Buffer): string | { line: number } {
  if (isUtf8(bytes)) return bytes.toString('utf8');
  const lenient = bytes.toString('utf8');
  const at = lenient.indexOf('\uFFFD');
  return { line: lenient.slice(0, Math.max(0, at)).split('\n').length };
}

interface Input {
  source: string;
  text: string;
  /** A file a kustomization names as a patch. */
  patch: boolean;
  manifests: Manifest[];
}

/** Files read at once. */
const READ_AHEAD = 32;

/**
 * The kinds parsed whole: those with pod templates, Namespaces (their labels), Services (the pods
 * they send traffic to) and policies.
 */
const WHOLE_KINDS = new Set([...WORKLOAD_KINDS.map((k) => k.kind), 'Namespace', 'Service', KIND]);
const readWhole = (kind: string) => WHOLE_KINDS.has(kind);

/** Why a path cannot be read, in words: the error code and Node's text for it. */
function cannotRead(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  const reason =
    code === 'ENOENT'
      ? 'no such file or directory'
      : code === 'EACCES'
        ? 'permission denied'
        : code === 'EISDIR'
          ? 'a directory'
          : error instanceof InputTooLarge
            ? error.message
            : undefined;
  return `cannot read: ${code ?? 'error'}${reason ? ` (${reason})` : ''}`;
}

/**
 * The inputs, and what could not be read as findings: an unreadable path, a document that is
 * not YAML or not an object. The run goes on with the rest.
 */
async function load(
  paths: string[],
  stdin: NodeJS.ReadableStream,
): Promise<{ inputs: Input[]; problems: Finding[] }> {
  const inputs: Input[] = [];
  const problems: Finding[] = [];
  const add = (source: string, bytes: Buffer, patch = false) => {
    const text = utf8(bytes);
    if (typeof text !== 'string') {
      problems.push(
        inputFinding({ source, line: text.line, rule: 'InputInvalidYaml', message: 'not valid UTF-8' }),
      );
      return;
    }
    const read = readInput(text, source, readWhole);
    inputs.push({ source, text, patch, manifests: read.manifests.map((m) => (patch ? { ...m, patch } : m)) });
    // A JSON 6902 patch is a list of operations, not an object: expected of a patch file.
    for (const p of read.problems.filter((p) => !(patch && p.kind === 'NotAnObject')))
      problems.push(
        inputFinding({
          source: p.source,
          line: p.line,
          rule:
            p.kind === 'InvalidYaml'
              ? 'InputInvalidYaml'
              : p.kind === 'NotAnObject'
                ? 'InputNotAnObject'
                : 'InputDuplicateKey',
          message: p.message,
        }),
      );
  };
  const unreadable = (source: string, error: unknown) =>
    problems.push(inputFinding({ source, line: 0, rule: 'InputUnreadable', message: cannotRead(error) }));
  // Every file first (a directory is walked), then read a batch at a time, so that the disk
  // works while the parser does; parsed in the order given.
  const sources: (Found | '-')[] = [];
  for (const path of paths) {
    if (path === '-') sources.push('-');
    else
      try {
        sources.push(...(await manifestFiles(path, problems)));
      } catch (error) {
        unreadable(path, error);
      }
  }
  for (let i = 0; i < sources.length; i += READ_AHEAD) {
    const batch = sources.slice(i, i + READ_AHEAD);
    const read = await Promise.all(
      batch.map((s) => (s === '-' ? readBounded(stdin) : readInputFile(s)).catch((error: unknown) => error)),
    );
    batch.forEach((s, j) => {
      const bytes = read[j];
      const source = s === '-' ? '-' : s.file;
      if (Buffer.isBuffer(bytes)) add(source, bytes, s !== '-' && s.patch);
      else unreadable(source, bytes);
    });
  }
  return { inputs, problems };
}

/** Policy files (-p) must be read whole: a policy that cannot be read is an input error. */
async function loadPolicies(paths: string[], stdin: NodeJS.ReadableStream): Promise<Manifest[]> {
  const { inputs, problems } = await load(paths, stdin);
  const [problem] = problems.filter((p) => p.rule !== 'InputDuplicateKey');
  if (problem) throw new ManifestError(problem.source, problem.line, problem.message);
  return inputs.flatMap((i) => i.manifests);
}

/** The cluster's GracefulShutdownPolicies, as manifests (source "cluster"). */
async function clusterPolicies(kubeconfig: string | undefined): Promise<Manifest[]> {
  // Loaded here: the Kubernetes client takes longer to load than a run without it takes.
  const { CustomObjectsApi } = await import('@kubernetes/client-node');
  const { loadKubeConfig } = await import('../kube/client.ts');
  const { describeRequestError } = await import('../kube/preflight.ts');
  let kc: Awaited<ReturnType<typeof loadKubeConfig>>;
  try {
    kc = loadKubeConfig(kubeconfig ? { path: kubeconfig } : {});
  } catch (error) {
    throw new ManifestError('cluster', 0, `cannot read the policies: ${(error as Error).message}`);
  }
  const server = kc.getCurrentCluster()?.server;
  try {
    const list = (await kc.makeApiClient(CustomObjectsApi).listClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
    })) as { items?: Record<string, unknown>[] };
    return (list.items ?? []).map((object) => ({
      source: `cluster:${(object.metadata as { name?: string } | undefined)?.name ?? ''}`,
      line: 0,
      object: { apiVersion: API_VERSION, kind: KIND, ...object },
    }));
  } catch (error) {
    throw new ManifestError(
      'cluster',
      0,
      `cannot read the policies from ${server}: ${describeRequestError(error)}`,
    );
  }
}

export interface Io {
  stdin: NodeJS.ReadableStream;
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

/** Runs gsp with `argv` (after the program name); resolves to the exit code. */
export async function run(argv: string[], io: Io): Promise<number> {
  if (argv[0] === 'release') return runRelease(argv.slice(1), io);
  try {
    const { values, positionals } = (() => {
      try {
        return parseArgs({
          args: argv,
          allowPositionals: true,
          options: {
            policy: { type: 'string', short: 'p', multiple: true, default: [] },
            output: { type: 'string', short: 'o', default: 'table' },
            'fail-on': { type: 'string', default: 'error' },
            namespace: { type: 'string', short: 'n', default: 'default' },
            'kubernetes-version': { type: 'string', default: '1.34' },
            fix: { type: 'boolean', default: false },
            strict: { type: 'boolean', default: false },
            'sarif-base': { type: 'string' },
            'stdin-name': { type: 'string', default: 'stdin' },
            cluster: { type: 'boolean', default: false },
            kubeconfig: { type: 'string' },
            help: { type: 'boolean', short: 'h', default: false },
            version: { type: 'boolean', default: false },
          },
        });
      } catch (error) {
        throw new UsageError((error as Error).message);
      }
    })();
    if (values.help) {
      io.stdout(`${usage}\n`);
      return EXIT.ok;
    }
    if (values.version) {
      io.stdout(`${versionLine('gsp')}\n`);
      return EXIT.ok;
    }
    const [command, ...paths] = positionals;
    if (command !== 'audit') throw new UsageError(command ? `unknown command ${command}` : 'no command');
    if (paths.length === 0)
      throw new UsageError('audit: name at least one file, directory or - (standard input)');
    const output = values.output as OutputFormat;
    if (!['table', 'json', 'sarif'].includes(output))
      throw new UsageError(`--output: want table, json or sarif, got ${JSON.stringify(values.output)}`);
    const failOn = values['fail-on'];
    if (failOn !== 'none' && !SEVERITIES.includes(failOn as Severity))
      throw new UsageError(`--fail-on: want error, warning, note or none, got ${JSON.stringify(failOn)}`);
    if (!/^v?\d+\.\d+/.test(values['kubernetes-version']))
      throw new UsageError(
        `--kubernetes-version: want e.g. 1.34, got ${JSON.stringify(values['kubernetes-version'])}`,
      );

    const options = { namespace: values.namespace, kubernetesVersion: values['kubernetes-version'] };
    const { inputs, problems } = await load(paths, io.stdin);
    let manifests = inputs.flatMap((i) => i.manifests);
    // Nothing at all: a wrong path or an empty directory should not pass in CI unnoticed.
    if (manifests.length === 0 && problems.every((p) => p.severity === 'note')) {
      for (const p of problems) io.stderr(`gsp: ${printable(`${p.source}: ${p.message}`)}\n`);
      io.stderr(
        `gsp: no Kubernetes objects in ${paths.map((p) => (p === '-' ? 'standard input' : p)).join(', ')}\n`,
      );
      return EXIT.input;
    }
    // Nothing to audit, or a strict run: the problems are the answer.
    const blocking = problems.filter((p) => p.severity === 'error');
    if ((manifests.length === 0 && blocking.length > 0) || (values.strict && problems.length > 0)) {
      for (const p of problems) io.stderr(`gsp: ${printable(`${p.source}:${p.line}: ${p.message}`)}\n`);
      return EXIT.input;
    }
    const policyManifests = await loadPolicies(values.policy, io.stdin);
    const fromCluster = values.cluster ? await clusterPolicies(values.kubeconfig) : [];
    const policies = readPolicies([...fromCluster, ...policyManifests, ...manifests]);
    // The report goes to stderr when the fixed stream itself goes to stdout.
    let report = io.stdout;
    if (values.fix) {
      const labels = namespaceLabelsOf(manifests);
      manifests = [];
      const unparsed = new Set(problems.filter((p) => p.rule === 'InputInvalidYaml').map((p) => p.source));
      for (const input of inputs) {
        const where = printable(input.source);
        // A file that does not parse whole is not rewritten: its findings say why.
        const { text, fixed, refused } = unparsed.has(input.source)
          ? { text: input.text, fixed: [], refused: ['it is not valid YAML throughout'] }
          : fixManifests(input.text, policies, options, labels, input.patch);
        let written = text;
        if (input.source === '-') {
          io.stdout(text);
          report = io.stderr;
        } else if (fixed.length > 0)
          try {
            await writeFileAtomic(input.source, text);
          } catch (error) {
            // Not written: nothing was fixed in this file, and the run goes on.
            refused.splice(
              0,
              refused.length,
              `cannot write it: ${cannotRead(error).replace(/^cannot read: /, '')}`,
            );
            fixed.length = 0;
            written = input.text;
          }
        for (const why of refused) io.stderr(`not fixed (${where}): ${printable(why)}\n`);
        for (const f of fixed) io.stderr(`fixed ${printable(f.workload)} (${where}): ${printable(f.what)}\n`);
        manifests.push(
          ...readInput(written, input.source, readWhole).manifests.map((m) =>
            input.patch ? { ...m, patch: true } : m,
          ),
        );
      }
    }
    const result = audit(manifests, policies, options);
    result.findings.unshift(...problems);
    report(
      output === 'json'
        ? formatJson(result)
        : output === 'sarif'
          ? formatSarif(result, BUILD.version, {
              base: values['sarif-base'] ?? process.cwd(),
              stdinName: values['stdin-name'],
            })
          : formatTable(result),
    );
    if (failOn === 'none') return EXIT.ok;
    const threshold = SEVERITIES.indexOf(failOn as Severity);
    return result.findings.some((f) => SEVERITIES.indexOf(f.severity) >= threshold) ? EXIT.findings : EXIT.ok;
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr(`gsp: ${error.message}\n${usage}\n`);
      return EXIT.usage;
    }
    if (error instanceof ManifestError || error instanceof PolicyError) {
      io.stderr(`gsp: ${error.message}\n`);
      return EXIT.input;
    }
    throw error;
  }
}

/** The process's own standard streams. */
export const processIo: Io = {
  stdin: process.stdin,
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
};
