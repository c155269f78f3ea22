// What the real node changes on the host, and how it is put back: the pod bridge that carries
// the node IP, the nft guard that keeps every packet on this machine, the sysctls kubelet and
// the bridge plugin change, and the leftovers of a node (mounts, cgroups, nft tables, fixed host
// paths). A claim file records the owner and the original sysctls, so a node whose owner died
// (kill -9) is cleaned up by the next start. A cluster without a real node gets a guard of its
// own (installNetGuard).
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, readlink, rm, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ensureDebianPackages } from './packages.ts';

const execFileAsync = promisify(execFile);

/** The node's network, fixed: one real node per machine. */
export const hostNetwork = {
  bridge: 'gsobr0',
  nodeIp: '10.88.0.1',
  podCidr: '10.88.0.0/24',
  /** kube-apiserver's --service-cluster-ip-range (cluster.ts). */
  serviceCidr: '10.0.0.0/24',
  /** kwok's --cidr: fake pod IPs that no packet may be sent to. */
  kwokPodCidr: '10.244.0.0/16',
} as const;

export const guardTable = 'gso_guard';
/** The CNI network's name (node.ts writes the conflist). */
export const cniNetworkName = 'gso-pods';

/** Tables the node's components create (kube-proxy, the portmap plugin) and our guard. */
const nodeTables = [
  'ip kube-proxy',
  'ip6 kube-proxy',
  'ip cni_hostport',
  'ip6 cni_hostport',
  `inet ${guardTable}`,
];

/** Host sysctls that kubelet (protectKernelDefaults off) and the bridge plugin may change. */
const watchedSysctls = [
  'vm.overcommit_memory',
  'vm.panic_on_oom',
  'kernel.panic',
  'kernel.panic_on_oops',
  'kernel.keys.root_maxkeys',
  'kernel.keys.root_maxbytes',
  'net.ipv4.ip_forward',
  'net.ipv4.conf.all.route_localnet',
];

/** Paths kubelet and libcni use whatever their configuration says. */
const fixedHostPaths = {
  files: ['/var/lib/kubelet/device-plugins/kubelet.sock'],
  /** Removed when the node made them and they are empty, deepest first. */
  dirs: [
    '/var/lib/cni/results',
    '/var/lib/cni',
    '/var/lib/kubelet/device-plugins',
    '/var/lib/kubelet',
    '/var/log/containers',
  ],
};
const cniResultsDir = '/var/lib/cni/results';
/** kubelet links each container's log here, whatever podLogsDir says. */
const containerLogLinks = '/var/log/containers';

/** Host-wide state of the one real node: its claim, and the shims' sockets (node.ts). */
export const claimDir = '/run/graceful-shutdown-operator';
const claimPath = join(claimDir, 'real-node.json');

interface Claim {
  ownerPid: number;
  workDir: string;
  /** Directory of the node's binaries: a process running one of them is ours. */
  binDir: string;
  sysctls: Record<string, string>;
  /** The fixed host directories that existed before the node: never removed. */
  preexisting: string[];
}

export class HostError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HostError';
  }
}

export async function sh(cmd: string, args: string[], opts: { input?: string } = {}): Promise<string> {
  try {
    const child = execFileAsync(cmd, args, { maxBuffer: 16 * 1024 * 1024, timeout: 60_000 });
    if (opts.input !== undefined) {
      child.child.stdin?.end(opts.input);
    }
    return (await child).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new HostError(`${cmd} ${args.join(' ')}: ${e.stderr?.trim() || e.message}`);
  }
}

const quiet = (p: Promise<unknown>): Promise<void> =>
  p.then(
    () => undefined,
    () => undefined,
  );

async function readSysctl(key: string): Promise<string | undefined> {
  return readFile(join('/proc/sys', key.replaceAll('.', '/')), 'utf8').then(
    (v) => v.trim(),
    () => undefined,
  );
}

async function writeSysctl(key: string, value: string): Promise<void> {
  await writeFile(join('/proc/sys', key.replaceAll('.', '/')), value);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Nothing the node carries may leave the machine: nothing from the pod bridge is forwarded to
 * another interface, and no packet to a cluster address (Service, pod, kwok's fake pod IPs) or
 * from a pod leaves by any interface but lo and the bridge. Postrouting, not output: after a
 * Service's DNAT the output hooks still see the interface of the address before translation.
 */
export function guardRules(): string {
  const n = hostNetwork;
  const local = `{ "lo", "${n.bridge}" }`;
  return `table inet ${guardTable} {
  chain forward {
    type filter hook forward priority -10; policy accept;
    iifname "${n.bridge}" oifname != "${n.bridge}" counter drop
  }
  chain postrouting {
    type filter hook postrouting priority 110; policy accept;
    ip daddr { ${n.serviceCidr}, ${n.kwokPodCidr}, ${n.podCidr} } oifname != ${local} counter drop
    ip saddr ${n.podCidr} oifname != ${local} counter drop
  }
}
`;
}

/** The guard as nft lists it, or undefined when the table is absent. */
export async function listGuard(): Promise<string | undefined> {
  return sh('nft', ['list', 'table', 'inet', guardTable]).catch(() => undefined);
}

/** Names of the nft tables on the host ("inet gso_guard", ...). */
export async function nftTables(): Promise<string[]> {
  const out = await sh('nft', ['list', 'tables']);
  return out
    .split('\n')
    .map((l) => l.replace(/^table\s+/, '').trim())
    .filter(Boolean)
    .sort();
}

/**
 * A cluster without a real node still has addresses an operator may connect to: kwok's fake pod
 * IPs and Service IPs, which only the default route would carry. Each such cluster installs its
 * own table, `inet gso_net_guard_<owner pid>_<n>`, so several can run beside each other and
 * beside the real node's `inet gso_guard`.
 */
let netGuardCount = 0;

/**
 * The guard of a cluster without a real node: nothing to its addresses leaves but by lo.
 * Priority 120, after the real node's guard (110), so with both installed that one's counter
 * still sees what it drops.
 */
export function netGuardRules(table: string): string {
  const n = hostNetwork;
  return `table inet ${table} {
  chain postrouting {
    type filter hook postrouting priority 120; policy accept;
    ip daddr { ${n.serviceCidr}, ${n.kwokPodCidr} } oifname != "lo" counter drop
  }
}
`;
}

/** The owner PID of a network guard ("inet gso_net_guard_<pid>_<n>"), undefined for any other table. */
export function netGuardOwner(table: string): number | undefined {
  const m = /^inet gso_net_guard_(\d+)_\d+$/.exec(table);
  return m ? Number(m[1]) : undefined;
}

/**
 * Installs a network guard for a cluster without a real node and returns its table name, after
 * removing the guards of dead owners (a killed run). Not root: says the addresses are unguarded
 * and returns undefined.
 */
export async function installNetGuard(progress: (line: string) => void): Promise<string | undefined> {
  if (process.getuid?.() !== 0) {
    progress(
      `[cluster] not root: kwok pod (${hostNetwork.kwokPodCidr}) and Service (${hostNetwork.serviceCidr}) addresses are unguarded; nothing in the cluster connects to them, but an operator that does would reach the default route`,
    );
    return undefined;
  }
  const hasNft = await sh('nft', ['--version']).then(
    () => true,
    () => false,
  );
  if (!hasNft) await ensureDebianPackages(['nftables'], progress);
  for (const t of await nftTables()) {
    const owner = netGuardOwner(t);
    if (owner !== undefined && !isAlive(owner)) await quiet(sh('nft', ['delete', 'table', ...t.split(' ')]));
  }
  const table = `gso_net_guard_${process.pid}_${++netGuardCount}`;
  await sh('nft', ['-f', '-'], { input: netGuardRules(table) });
  return table;
}

export async function removeNetGuard(table: string): Promise<void> {
  await quiet(sh('nft', ['delete', 'table', 'inet', table]));
}

/**
 * Claims the host for one real node and prepares it: cleans up after a node whose owner died,
 * records the sysctls, creates the bridge with the node IP and installs the guard.
 */
export async function prepareHost(opts: { workDir: string; binDir: string }): Promise<void> {
  if (process.getuid?.() !== 0) {
    throw new HostError('a real node needs root (it creates a bridge, nft tables, mounts and cgroups)');
  }
  const previous = await readClaim();
  if (previous) {
    if (previous.ownerPid !== process.pid && isAlive(previous.ownerPid)) {
      throw new HostError(
        `a real node is already running on this machine (owner pid ${previous.ownerPid}, ${previous.workDir}); one real node per machine`,
      );
    }
    await cleanHost(previous);
  }
  const sysctls: Record<string, string> = {};
  for (const key of watchedSysctls) {
    const value = await readSysctl(key);
    if (value !== undefined) sysctls[key] = value;
  }
  const claim: Claim = {
    ownerPid: process.pid,
    workDir: opts.workDir,
    binDir: opts.binDir,
    sysctls,
    preexisting: fixedHostPaths.dirs.filter((d) => existsSync(d)),
  };
  await mkdir(claimDir, { recursive: true });
  await writeFile(claimPath, JSON.stringify(claim, null, 2));

  const n = hostNetwork;
  await sh('ip', ['link', 'add', n.bridge, 'type', 'bridge']);
  await sh('ip', ['addr', 'add', `${n.nodeIp}/24`, 'dev', n.bridge]);
  await sh('ip', ['link', 'set', n.bridge, 'up']);
  // Installed before anything turns ip_forward on.
  await sh('nft', ['-f', '-'], { input: guardRules() });
}

async function readClaim(): Promise<Claim | undefined> {
  try {
    return JSON.parse(await readFile(claimPath, 'utf8')) as Claim;
  } catch {
    return undefined;
  }
}

/**
 * PIDs whose executable lies in dir: containerd's shims re-parent themselves away from us, and a
 * node whose owner was killed leaves its kubelet and containerd running.
 */
export async function pidsOfBinariesIn(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const exe = await readlink(`/proc/${entry}/exe`).catch(() => '');
    if (exe.startsWith(`${dir}/`)) pids.push(Number(entry));
  }
  return pids;
}

/** SIGTERM, then SIGKILL after graceMs; resolves when the PID is gone. */
export async function stopPid(pid: number, graceMs = 10_000): Promise<void> {
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(pid, sig);
    } catch {}
  };
  signal('SIGTERM');
  const deadline = Date.now() + graceMs;
  while (isAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  if (isAlive(pid)) {
    signal('SIGKILL');
    while (isAlive(pid)) await new Promise((r) => setTimeout(r, 50));
  }
}

/** Mount points under dir, deepest first. */
async function mountsUnder(dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mounts', 'utf8');
  return text
    .split('\n')
    .map((l) => l.split(' ')[1]?.replaceAll('\\040', ' '))
    .filter((m): m is string => m !== undefined && (m === dir || m.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
}

/** kubepods cgroups kubelet made (cgroupfs driver: one tree per v1 hierarchy, or the v2 root). */
async function kubepodsCgroups(): Promise<string[]> {
  const found: string[] = [];
  const roots = [
    '/sys/fs/cgroup',
    ...(await readdir('/sys/fs/cgroup').catch(() => [])).map((h) => `/sys/fs/cgroup/${h}`),
  ];
  for (const root of roots) if (existsSync(join(root, 'kubepods'))) found.push(join(root, 'kubepods'));
  return found;
}

/** SIGKILLs every process in a cgroup tree (containers a dead shim left behind). */
async function killCgroupTree(dir: string): Promise<void> {
  const procs = await readFile(join(dir, 'cgroup.procs'), 'utf8').catch(() => '');
  for (const pid of procs.split('\n').filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {}
  }
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) if (e.isDirectory()) await killCgroupTree(join(dir, e.name));
}

async function removeCgroupTree(dir: string): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) if (e.isDirectory()) await removeCgroupTree(join(dir, e.name));
  await quiet(rmdir(dir));
}

/**
 * Puts the host back: the node's processes left running (shims always; everything when the
 * owner died) are stopped here by PID. Removes mounts under the work dir, kubepods cgroups, the node's nft
 * tables, the bridge and its veths, the fixed host paths, restores sysctls and drops the claim.
 */
export async function cleanHost(claim?: Claim): Promise<void> {
  const c = claim ?? (await readClaim());
  if (!c) return;
  for (const pid of await pidsOfBinariesIn(c.binDir)) await stopPid(pid, 5_000);
  for (const m of await mountsUnder(c.workDir)) {
    await sh('umount', [m]).catch(() => sh('umount', ['-l', m]).catch(() => undefined));
  }
  const cgroups = await kubepodsCgroups();
  for (const cg of cgroups) await killCgroupTree(cg);
  if (cgroups.length > 0) await new Promise((r) => setTimeout(r, 200));
  for (const cg of cgroups) await removeCgroupTree(cg);
  const tables = await nftTables().catch((): string[] => []);
  for (const t of nodeTables)
    if (tables.includes(t)) await quiet(sh('nft', ['delete', 'table', ...t.split(' ')]));
  const n = hostNetwork;
  const ports = await sh('ip', ['-o', 'link', 'show', 'master', n.bridge]).catch(() => '');
  for (const line of ports.split('\n')) {
    const name = /^\d+:\s+([^@:\s]+)/.exec(line)?.[1];
    if (name) await quiet(sh('ip', ['link', 'del', name]));
  }
  await quiet(sh('ip', ['link', 'del', n.bridge]));
  for (const [key, value] of Object.entries(c.sysctls)) {
    if ((await readSysctl(key)) !== value) await quiet(writeSysctl(key, value));
  }
  for (const f of fixedHostPaths.files) await rm(f, { force: true });
  // libcni caches each attachment's result under the network's name (and the loopback's).
  for (const f of await readdir(cniResultsDir).catch((): string[] => [])) {
    if (f.startsWith(`${cniNetworkName}-`) || f.startsWith('cni-loopback-'))
      await rm(join(cniResultsDir, f), { force: true });
  }
  for (const f of await readdir(containerLogLinks).catch((): string[] => [])) {
    const target = await readlink(join(containerLogLinks, f)).catch(() => '');
    if (target.startsWith(`${c.workDir}/`)) await rm(join(containerLogLinks, f), { force: true });
  }
  for (const d of fixedHostPaths.dirs) if (!c.preexisting.includes(d)) await quiet(rmdir(d));
  await rm(c.workDir, { recursive: true, force: true });
  // The claim, and the shims' socket directory beside it (node.ts: containerd wants a short path).
  await rm(claimDir, { recursive: true, force: true });
}

/** What a real node may change on the host, for a before/after comparison. */
export interface HostSnapshot {
  nftTables: string[];
  links: string[];
  mountsUnderTmp: number;
  kubepodsCgroups: string[];
  sysctls: Record<string, string | undefined>;
  hostPaths: string[];
  claim: boolean;
}

export async function hostSnapshot(): Promise<HostSnapshot> {
  const links = (await sh('ip', ['-o', 'link', 'show']))
    .split('\n')
    .map((l) => /^\d+:\s+([^@:\s]+)/.exec(l)?.[1])
    .filter((l): l is string => l !== undefined)
    .sort();
  const sysctls: Record<string, string | undefined> = {};
  for (const key of watchedSysctls) sysctls[key] = await readSysctl(key);
  return {
    nftTables: await nftTables(),
    links,
    mountsUnderTmp: (await mountsUnder('/tmp')).length,
    kubepodsCgroups: await kubepodsCgroups(),
    sysctls,
    hostPaths: [...fixedHostPaths.files, ...fixedHostPaths.dirs].filter((p) => existsSync(p)),
    claim: existsSync(claimDir),
  };
}
