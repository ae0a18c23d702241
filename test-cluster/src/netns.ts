// `--netns`: every member in its own Linux network namespace, with its own address on a private
// bridge, so that a network partition between two members can be cut for real. One network per lane
// run (or per `cluster up`):
//
//   bridge  pc<id>            holds the gateway 10.A.B.1/24, so the host (lane, clients) reaches all
//   member  pc-<id>-<member>  a namespace with loopback up and eth0 = 10.A.B.N/24, whose peer pv<id>N
//                             is attached to the bridge
//
// Members talk to each other over the bridge (layer 2: no forwarding, no sysctl changes; this bridge
// alone is exempted from br_netfilter, so host firewall rules do not filter traffic between members).
// A partition is a pair of `prohibit` routes, one inside each namespace. Everything is torn down by
// destroy(), by a process exit hook, or afterwards by `pnpm cluster netns-clean` (runs whose owner is
// gone).
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { accessSync, constants, existsSync } from "node:fs";
import { delimiter, join } from "node:path";
import { processExists } from "@photoncloud/daemon";

/** Why --netns cannot run here, and how to fix it. */
export class NetnsUnavailableError extends Error {
  readonly code = "NETNS_UNAVAILABLE";
}

export interface PreflightEnv {
  readonly uid: number | undefined;
  readonly path: string | undefined;
  /** Searched after PATH (default: the sbin directories a non-login root shell may lack). */
  readonly fallbackDirs?: readonly string[];
}

const sbinDirs = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/** Where `ip` is: PATH first, then `fallbackDirs`. */
export function findIp(
  path: string | undefined = process.env.PATH,
  fallbackDirs: readonly string[] = sbinDirs,
): string | undefined {
  const dirs = [...(path ?? "").split(delimiter).filter(Boolean), ...fallbackDirs];
  for (const dir of dirs) {
    const candidate = join(dir, "ip");
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

/** Checks root and iproute2; returns the `ip` executable or throws naming what is missing. */
export function netnsPreflight(
  env: PreflightEnv = { uid: process.getuid?.(), path: process.env.PATH },
): string {
  if (env.uid !== 0) {
    throw new NetnsUnavailableError(
      `--netns needs root (running as uid ${env.uid ?? "unknown"}): network namespaces, veth pairs and the ` +
        "bridge can only be created by root. Run as root or drop --netns",
    );
  }
  const ip = findIp(env.path, env.fallbackDirs);
  if (ip === undefined) {
    throw new NetnsUnavailableError(
      "--netns needs iproute2's `ip` (not found on PATH, /usr/sbin or /sbin): apt-get install iproute2, " +
        "or drop --netns",
    );
  }
  return ip;
}

/** Names this module creates: namespaces pc-<6 hex>-…, bridges pc<6 hex>, host veths pv<6 hex><n>. */
const namespacePattern = /^pc-([0-9a-f]{6})-/;
const bridgePattern = /^pc([0-9a-f]{6})$/;
const ownerAlias = /^photoncloud-netns pid=(\d+)$/;

export interface NetnsMember {
  /** What the harness calls the member, e.g. `chainfire-node01`. */
  readonly member: string;
  readonly namespace: string;
  readonly address: string;
  /** The host end of the veth pair, on the bridge. */
  readonly hostVeth: string;
}

export interface Partition {
  readonly a: string;
  readonly b: string;
}

function run(ip: string, args: string[]): string {
  try {
    return execFileSync(ip, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(" ")} failed: ${(e.stderr ?? "").trim() || e.message}`);
  }
}

/** Every IPv4 prefix the host already uses (addresses and routes), as [first, last] integers. */
function usedRanges(ip: string): [number, number][] {
  const ranges: [number, number][] = [];
  const add = (cidr: string) => {
    const [addr, len] = cidr.split("/");
    const n = toInt(addr!);
    if (n === undefined) return;
    const bits = len === undefined ? 32 : Number(len);
    const size = 2 ** (32 - bits);
    const first = Math.floor(n / size) * size;
    ranges.push([first, first + size - 1]);
  };
  for (const line of run(ip, ["-o", "-4", "addr", "show"]).split("\n")) {
    const m = /inet (\S+)/.exec(line);
    if (m) add(m[1]!);
  }
  for (const table of ["main", "local"]) {
    for (const line of run(ip, ["-4", "route", "show", "table", table]).split("\n")) {
      const word = line.trim().split(/\s+/);
      const dest = word[0] === "local" || word[0] === "broadcast" ? word[1] : word[0];
      if (dest !== undefined && dest !== "" && dest !== "default") add(dest);
    }
  }
  // Other runs' member addresses live inside their namespaces, but their bridges' subnets are here.
  return ranges;
}

function toInt(addr: string): number | undefined {
  const parts = addr.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) return undefined;
  return ((parts[0]! << 24) >>> 0) + (parts[1]! << 16) + (parts[2]! << 8) + parts[3]!;
}

function overlaps(used: [number, number][], base: string): boolean {
  const first = toInt(`${base}.0`)!;
  const last = first + 255;
  return used.some(([lo, hi]) => lo <= last && first <= hi);
}

/** A 10.A.B.0/24 that overlaps nothing the host has an address or a route for. */
function pickSubnet(ip: string): string {
  const used = usedRanges(ip);
  for (let attempt = 0; attempt < 200; attempt++) {
    const [a, b] = randomBytes(2);
    const base = `10.${100 + (a! % 150)}.${b!}`;
    if (!overlaps(used, base)) return base;
  }
  throw new Error("could not find a free 10.x.y.0/24 for the --netns bridge");
}

/** `subnet` (10.A.B.0/24) if nothing on the host uses it: a cluster restarted on its old addresses. */
function reuseSubnet(ip: string, subnet: string): string {
  const m = /^(10\.\d{1,3}\.\d{1,3})\.0\/24$/.exec(subnet);
  if (m === null || toInt(`${m[1]}.0`) === undefined)
    throw new Error(`${subnet} is not a 10.x.y.0/24 subnet`);
  if (overlaps(usedRanges(ip), m[1]!)) throw new Error(`${subnet} is already in use on this host`);
  return m[1]!;
}

function listNamespaces(ip: string): string[] {
  return run(ip, ["netns", "list"])
    .split("\n")
    .map((l) => l.trim().split(/\s+/)[0] ?? "")
    .filter((n) => n !== "");
}

function listLinks(ip: string): { name: string; alias?: string }[] {
  const out: { name: string; alias?: string }[] = [];
  let current: { name: string; alias?: string } | undefined;
  for (const line of run(ip, ["link", "show"]).split("\n")) {
    const head = /^\d+: ([^:@\s]+)[@:]/.exec(line);
    if (head) {
      current = { name: head[1]! };
      out.push(current);
      continue;
    }
    const alias = /^\s+alias (.*)$/.exec(line);
    if (alias && current) current.alias = alias[1]!.trim();
  }
  return out;
}

/** Kills every process inside `namespace` (SIGKILL) and waits until none is left. */
function killInside(ip: string, namespace: string): number[] {
  const pids = (name: string) =>
    spawnSync(ip, ["netns", "pids", name], { encoding: "utf8" })
      .stdout.split("\n")
      .map((l) => Number(l.trim()))
      .filter((p) => Number.isInteger(p) && p > 0);
  const killed = pids(namespace);
  for (const pid of killed) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  // SIGKILL is delivered at once but the exit is asynchronous; `ip netns del` works either way, the
  // namespace itself lingers until its last process has gone.
  return killed;
}

const liveNetworks = new Set<NetnsNetwork>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const network of liveNetworks) network.destroy();
  });
}

export interface NetworkDescription {
  readonly id: string;
  readonly bridge: string;
  readonly subnet: string;
  readonly gateway: string;
  readonly ownerPid: number;
  readonly members: NetnsMember[];
  readonly partitions: Partition[];
}

export class NetnsNetwork {
  readonly members = new Map<string, NetnsMember>();
  private readonly partitions: Partition[] = [];
  private destroyed = false;
  /** Called after every change (member added, partition cut or healed), e.g. to rewrite network.json. */
  onChange: ((d: NetworkDescription) => void) | undefined;

  private constructor(
    readonly ip: string,
    readonly id: string,
    readonly base: string,
  ) {}

  get bridge(): string {
    return `pc${this.id}`;
  }
  get subnet(): string {
    return `${this.base}.0/24`;
  }
  get gateway(): string {
    return `${this.base}.1`;
  }

  /**
   * Creates the bridge (with the gateway address) on a free 10.x.y.0/24, or on `subnet` when given
   * (members then get the same addresses as the last time, in the same order); requires root and `ip`.
   */
  static create(options: { subnet?: string } = {}): NetnsNetwork {
    const ip = netnsPreflight();
    let id = randomBytes(3).toString("hex");
    const taken = new Set(listLinks(ip).map((l) => l.name));
    while (taken.has(`pc${id}`)) id = randomBytes(3).toString("hex");
    const base = options.subnet === undefined ? pickSubnet(ip) : reuseSubnet(ip, options.subnet);
    const network = new NetnsNetwork(ip, id, base);
    liveNetworks.add(network);
    installExitHook();
    try {
      run(ip, ["link", "add", network.bridge, "type", "bridge"]);
      run(ip, ["link", "set", "dev", network.bridge, "alias", `photoncloud-netns pid=${process.pid}`]);
      // Frames between members stay on this bridge: keep the host's firewall (e.g. a FORWARD policy
      // of DROP, with br_netfilter loaded) out of them, for this bridge only.
      run(ip, ["link", "set", "dev", network.bridge, "type", "bridge", "nf_call_iptables", "0"]);
      run(ip, ["link", "set", "dev", network.bridge, "type", "bridge", "nf_call_ip6tables", "0"]);
      run(ip, ["addr", "add", `${network.gateway}/24`, "dev", network.bridge]);
      run(ip, ["link", "set", network.bridge, "up"]);
    } catch (err) {
      network.destroy();
      throw err;
    }
    return network;
  }

  /** The namespace of `member`, created on first use (a re-added member keeps its address). */
  ensureMember(member: string): NetnsMember {
    if (this.destroyed) throw new Error(`the --netns network ${this.bridge} has been torn down`);
    const existing = this.members.get(member);
    if (existing !== undefined) return existing;
    const n = this.members.size + 2;
    if (n > 254) throw new Error(`the --netns subnet ${this.subnet} is full`);
    const slug = member.replace(/[^A-Za-z0-9_.-]/g, "-");
    const entry: NetnsMember = {
      member,
      namespace: `pc-${this.id}-${slug}`,
      address: `${this.base}.${n}`,
      hostVeth: `pv${this.id}${n}`,
    };
    this.members.set(member, entry);
    const { ip } = this;
    const ns = entry.namespace;
    run(ip, ["netns", "add", ns]);
    run(ip, ["-n", ns, "link", "set", "lo", "up"]);
    run(ip, ["link", "add", entry.hostVeth, "type", "veth", "peer", "name", "eth0", "netns", ns]);
    run(ip, ["link", "set", entry.hostVeth, "master", this.bridge]);
    run(ip, ["link", "set", entry.hostVeth, "up"]);
    run(ip, ["-n", ns, "addr", "add", `${entry.address}/24`, "dev", "eth0"]);
    run(ip, ["-n", ns, "link", "set", "eth0", "up"]);
    this.changed();
    return entry;
  }

  /** `command args` run inside `namespace`. `ip netns exec` execs, so the pid is the command's own. */
  wrap(namespace: string, command: string, args: readonly string[]): { command: string; args: string[] } {
    if (![...this.members.values()].some((m) => m.namespace === namespace))
      throw new Error(`no --netns namespace ${namespace} in ${this.bridge}`);
    return { command: this.ip, args: ["netns", "exec", namespace, command, ...args] };
  }

  private entry(member: string): NetnsMember {
    const e = this.members.get(member);
    if (e === undefined)
      throw new Error(`no --netns member ${member} (members: ${[...this.members.keys()].join(", ")})`);
    return e;
  }

  /** Cuts all traffic between `a` and `b` (both directions); the host still reaches both. */
  partition(a: string, b: string): void {
    const ea = this.entry(a);
    const eb = this.entry(b);
    if (this.isPartitioned(a, b)) return;
    run(this.ip, ["-n", ea.namespace, "route", "add", "prohibit", `${eb.address}/32`]);
    run(this.ip, ["-n", eb.namespace, "route", "add", "prohibit", `${ea.address}/32`]);
    this.partitions.push({ a, b });
    this.changed();
  }

  /** Restores traffic between `a` and `b`. */
  heal(a: string, b: string): void {
    const i = this.partitions.findIndex((p) => (p.a === a && p.b === b) || (p.a === b && p.b === a));
    if (i < 0) return;
    const ea = this.entry(a);
    const eb = this.entry(b);
    run(this.ip, ["-n", ea.namespace, "route", "del", "prohibit", `${eb.address}/32`]);
    run(this.ip, ["-n", eb.namespace, "route", "del", "prohibit", `${ea.address}/32`]);
    this.partitions.splice(i, 1);
    this.changed();
  }

  /** Cuts `member` off from every other member; returns the pairs cut. */
  isolate(member: string, from: readonly string[]): Partition[] {
    for (const other of from) if (other !== member) this.partition(member, other);
    return from.filter((o) => o !== member).map((o) => ({ a: member, b: o }));
  }

  healAll(): void {
    for (const p of [...this.partitions]) this.heal(p.a, p.b);
  }

  isPartitioned(a: string, b: string): boolean {
    return this.partitions.some((p) => (p.a === a && p.b === b) || (p.a === b && p.b === a));
  }

  describe(): NetworkDescription {
    return {
      id: this.id,
      bridge: this.bridge,
      subnet: this.subnet,
      gateway: this.gateway,
      ownerPid: process.pid,
      members: [...this.members.values()],
      partitions: [...this.partitions],
    };
  }

  private changed(): void {
    this.onChange?.(this.describe());
  }

  /**
   * Kills whatever still runs inside the namespaces, then removes every namespace (which removes its
   * veth pair) and the bridge. Synchronous, so it also works from an exit hook; never throws.
   */
  destroy(): string[] {
    if (this.destroyed) return [];
    this.destroyed = true;
    liveNetworks.delete(this);
    return removeRun(this.ip, this.id);
  }
}

/** Removes the namespaces, veths and bridge of run `id`; returns what could not be removed. */
function removeRun(ip: string, id: string): string[] {
  const problems: string[] = [];
  for (const ns of listNamespaces(ip).filter((n) => n.startsWith(`pc-${id}-`))) {
    killInside(ip, ns);
    const r = spawnSync(ip, ["netns", "del", ns], { encoding: "utf8" });
    if (r.status !== 0) problems.push(`namespace ${ns}: ${r.stderr.trim()}`);
  }
  for (const link of listLinks(ip)) {
    if (link.name === `pc${id}` || new RegExp(`^pv${id}\\d+$`).test(link.name)) {
      const r = spawnSync(ip, ["link", "del", link.name], { encoding: "utf8" });
      if (r.status !== 0 && existsSync(`/sys/class/net/${link.name}`))
        problems.push(`link ${link.name}: ${r.stderr.trim()}`);
    }
  }
  return problems;
}

export interface CleanReport {
  /** Runs removed (their owner process is gone, or they had no bridge left). */
  readonly removed: { id: string; ownerPid: number | null; namespaces: string[]; bridge: string | null }[];
  /** Runs left alone because their owner is still running (pass force to remove them anyway). */
  readonly skipped: { id: string; ownerPid: number }[];
  readonly problems: string[];
}

/**
 * `pnpm cluster netns-clean`: removes the namespaces, veths and bridges left by runs whose owner
 * process is gone (a crash, a SIGKILL). Runs still owned by a live process are kept unless `force`.
 */
export function cleanLeftovers(options: { force?: boolean } = {}): CleanReport {
  const ip = netnsPreflight();
  const owners = new Map<string, number | null>();
  const bridges = new Map<string, string>();
  for (const link of listLinks(ip)) {
    const m = bridgePattern.exec(link.name);
    if (m === null) continue;
    const owner = ownerAlias.exec(link.alias ?? "");
    if (owner === null) continue; // Not ours: a pc-prefixed bridge without our alias.
    owners.set(m[1]!, Number(owner[1]));
    bridges.set(m[1]!, link.name);
  }
  const namespaces = new Map<string, string[]>();
  for (const ns of listNamespaces(ip)) {
    const m = namespacePattern.exec(ns);
    if (m === null) continue;
    const list = namespaces.get(m[1]!) ?? [];
    list.push(ns);
    namespaces.set(m[1]!, list);
    if (!owners.has(m[1]!)) owners.set(m[1]!, null);
  }
  const report: CleanReport = { removed: [], skipped: [], problems: [] };
  for (const [id, ownerPid] of owners) {
    if (ownerPid !== null && ownerPid !== process.pid && processExists(ownerPid) && !options.force) {
      report.skipped.push({ id, ownerPid });
      continue;
    }
    report.problems.push(...removeRun(ip, id));
    report.removed.push({
      id,
      ownerPid,
      namespaces: namespaces.get(id) ?? [],
      bridge: bridges.get(id) ?? null,
    });
  }
  return report;
}
