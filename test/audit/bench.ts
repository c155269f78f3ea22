// `npm run bench:audit`: gsp audit against kube-score on the same public manifests (test/audit/
// corpus.ts), in one run, alternating which goes first. kube-score stops at the first file it
// cannot parse, so both read the files kube-score accepts; gsp also reads the whole tree, which
// kube-score cannot. Prints a table; asserts nothing.
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { markdownTable, median } from '../bench/table.ts';
import { buildGoTargets, cacheRoot, goVersion } from '../cluster/build.ts';
import { ensureDebianPackages } from '../cluster/node/packages.ts';
import { repoRoot } from '../operator/install.ts';
import { CORPUS, corpusDir, ensureCorpus, filesUnder } from './corpus.ts';

const run = promisify(execFile);
const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' } } });
const RUNS = Number(values.runs);
const KUBE_SCORE_VERSION = 'v1.20.0';

interface Measure {
  wall: number;
  cpu: number;
  rssMiB: number;
  code: number;
}

/** One run under GNU time: wall and CPU seconds, peak memory; the output goes to /dev/null. */
async function measure(file: string, args: string[]): Promise<Measure> {
  const { stderr } = await run('/usr/bin/time', ['-f', 'GSPBENCH %e %U %S %M %x', file, ...args], {
    maxBuffer: 256 * 1024 * 1024,
  }).catch((e: { stderr: string }) => ({ stderr: e.stderr }));
  const line = stderr.split('\n').find((l) => l.startsWith('GSPBENCH ')) ?? '';
  const [wall, user, system, rss, code] = line.split(' ').slice(1).map(Number);
  return {
    wall: wall ?? Number.NaN,
    cpu: (user ?? 0) + (system ?? 0),
    rssMiB: (rss ?? 0) / 1024,
    code: code ?? -1,
  };
}

async function kubeScore(): Promise<string> {
  const dir = join(cacheRoot(), 'kube-score', `kube-score-${KUBE_SCORE_VERSION}_${await goVersion()}`);
  await mkdir(dir, { recursive: true });
  await buildGoTargets({
    label: 'kube-score build',
    dir,
    targets: [
      {
        name: 'kube-score',
        moduleDir: join(repoRoot, 'test', 'audit', 'go', 'kube-score'),
        pkg: 'github.com/zegl/kube-score/cmd/kube-score',
        ldflags: `-X main.version=${KUBE_SCORE_VERSION}`,
        tags: '',
      },
    ],
    intro: `kube-score ${KUBE_SCORE_VERSION} (about 2 minutes on 2 cores)`,
    progress: console.log,
  });
  return join(dir, 'kube-score');
}

/** Whether kube-score parses every one of the files (it exits 1 for findings too). */
async function kubeScoreReads(binary: string, files: string[]): Promise<boolean> {
  const { stderr } = await run(binary, ['score', '-o', 'json', ...files], {
    maxBuffer: 256 * 1024 * 1024,
  }).catch((e: { stderr: string }) => ({ stderr: e.stderr }));
  return !stderr.includes('failed to parse files');
}

/**
 * The files kube-score accepts: the whole list when it reads it all, else the halves that it
 * reads, down to the single files it refuses (kept in the cache for the next run).
 */
async function acceptedFiles(binary: string, files: string[]): Promise<string[]> {
  const cache = join(corpusDir(), `kube-score-${KUBE_SCORE_VERSION}-accepts.txt`);
  const cached = await readFile(cache, 'utf8').catch(() => undefined);
  if (cached !== undefined) return cached.split('\n').filter(Boolean);
  const accepted: string[] = [];
  const split = async (part: string[]): Promise<void> => {
    if (part.length === 0) return;
    if (await kubeScoreReads(binary, part)) {
      accepted.push(...part);
      return;
    }
    if (part.length === 1) return;
    const half = Math.ceil(part.length / 2);
    await split(part.slice(0, half));
    await split(part.slice(half));
  };
  console.log(`[bench:audit] finding the files kube-score parses among ${files.length} (once; cached)`);
  // In slices of 200: a refused file costs a few runs of its slice only.
  for (let i = 0; i < files.length; i += 200) await split(files.slice(i, i + 200));
  await writeFile(cache, `${accepted.join('\n')}\n`);
  return accepted;
}

await ensureDebianPackages(['time'], console.log);
const corpus = await ensureCorpus(console.log);
const files = (await filesUnder(corpus))
  .filter((f) => /\.(ya?ml|json)$/.test(f))
  .sort()
  .map((f) => join(corpus, f));
const binary = await kubeScore();
console.log('[bench:audit] building gsp (npm run build), as the package installs it');
await run('npm', ['run', 'build'], { cwd: repoRoot, maxBuffer: 64 * 1024 * 1024 });
const gsp = join(repoRoot, 'dist', 'operator', 'src', 'cli', 'bin.js');
const accepted = await acceptedFiles(binary, files);

const contenders: { name: string; files: string; command: [string, string[]] }[] = [
  {
    name: `kube-score ${KUBE_SCORE_VERSION}`,
    files: 'accepted',
    command: [binary, ['score', '-o', 'json', ...accepted]],
  },
  {
    name: 'gsp audit',
    files: 'accepted',
    command: [process.execPath, [gsp, 'audit', '-o', 'json', ...accepted]],
  },
  { name: 'gsp audit', files: 'all', command: [process.execPath, [gsp, 'audit', '-o', 'json', corpus]] },
];
const results = contenders.map(() => [] as Measure[]);
for (let r = 0; r < RUNS; r++) {
  // Alternate the order: a warm page cache favours whoever runs second.
  const order = r % 2 === 0 ? [0, 1, 2] : [2, 1, 0];
  for (const i of order) {
    const c = contenders[i];
    if (c) results[i]?.push(await measure(...c.command));
  }
}
console.log(
  `\ngsp audit and kube-score on ${files.length} files of ${CORPUS.length} projects' modules (${corpus}); ${accepted.length} of them are files kube-score parses. ${RUNS} runs each, median; ${cpus().length} CPUs.\n`,
);
console.log(
  markdownTable(
    ['tool', 'files', 'wall s', 'CPU s', 'max RSS MiB', 'exit'],
    contenders.map((c, i) => {
      const m = results[i] ?? [];
      return [
        c.name,
        c.files === 'all' ? String(files.length) : String(accepted.length),
        median(m.map((x) => x.wall)).toFixed(2),
        median(m.map((x) => x.cpu)).toFixed(2),
        median(m.map((x) => x.rssMiB)).toFixed(0),
        [...new Set(m.map((x) => x.code))].join(','),
      ];
    }),
  ),
);
const [ks, g] = [
  median((results[0] ?? []).map((x) => x.wall)),
  median((results[1] ?? []).map((x) => x.wall)),
];
console.log(`\ngsp / kube-score wall time on the same files: ${(g / ks).toFixed(2)} (the limit: 1.00)`);
