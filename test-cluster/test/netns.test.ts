// Proves --netns: without root or without iproute2 the option is refused with an error naming what
// is missing and the fix; as root with `ip`, two members in their own namespaces reach each other
// over the bridge, the supervised pid is the daemon's own (SIGTERM reaches it), a partition really
// blocks traffic between them (while the host still reaches both) and healing restores it, and
// destroy() leaves no namespace, veth or bridge behind; a lane run with netns records network.json and
// removes its network although a step failed.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { pollUntil } from "../src/poll.js";
import { type LaneDefinition, runLane } from "../src/lane.js";
import { NetnsNetwork, NetnsUnavailableError, findIp, netnsPreflight } from "../src/netns.js";
import { SupervisedProcess } from "../src/supervisor.js";

const fakeMember = fileURLToPath(new URL("./fixtures/fake-member.mjs", import.meta.url));
const connectProbe = fileURLToPath(new URL("./fixtures/connect.mjs", import.meta.url));
const canRun = process.getuid?.() === 0 && findIp() !== undefined;

describe("--netns preflight", () => {
  it("refuses a non-root user, naming root and the fix", () => {
    expect(() => netnsPreflight({ uid: 1000, path: process.env.PATH })).toThrow(NetnsUnavailableError);
    expect(() => netnsPreflight({ uid: 1000, path: process.env.PATH })).toThrow(
      /--netns needs root .*Run as root or drop --netns/,
    );
  });

  it("refuses a machine without iproute2, naming `ip` and the package", () => {
    expect(() => netnsPreflight({ uid: 0, path: "/nonexistent", fallbackDirs: [] })).toThrow(
      /--netns needs iproute2's `ip` .*apt-get install iproute2/,
    );
  });

  it("on this machine: creates a network as root with ip, or refuses with the clear error", () => {
    if (canRun) {
      expect(netnsPreflight()).toBe(findIp());
    } else {
      expect(() => NetnsNetwork.create()).toThrow(NetnsUnavailableError);
      expect(() => NetnsNetwork.create()).toThrow(/--netns needs (root|iproute2's `ip`)/);
    }
  });
});

describe.runIf(canRun)("a two-member namespace network (root)", () => {
  const dir = mkdtempSync(join(tmpdir(), "test-cluster-netns-"));
  let network: NetnsNetwork | undefined;
  const procs: SupervisedProcess[] = [];
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.kill()));
    network?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  const port = 7411;
  function probe(from: string, to: string): string {
    const src = network!.members.get(from)!;
    const dst = network!.members.get(to)!;
    const r = spawnSync(
      network!.ip,
      ["netns", "exec", src.namespace, process.execPath, connectProbe, dst.address, String(port)],
      { encoding: "utf8", timeout: 10_000 },
    );
    return r.stdout.trim();
  }

  it("connects, partitions, heals and tears down", async () => {
    network = NetnsNetwork.create();
    const seen: number[] = [];
    network.onChange = (d) => seen.push(d.members.length);
    for (const name of ["a", "b"]) {
      const m = network.ensureMember(name);
      const wrapped = network.wrap(m.namespace, process.execPath, [fakeMember, String(port)]);
      const proc = new SupervisedProcess({
        name,
        ...wrapped,
        env: { PATH: process.env.PATH ?? "", FAKE_MEMBER_HOST: m.address },
        logFile: join(dir, `${name}.log`),
        healthUrl: `http://${m.address}:${port}/health`,
      });
      procs.push(proc);
      proc.start();
      // Both members use the same port: each has its own address. The health body carries the pid
      // of the process that answers: it must be the supervised pid (`ip netns exec` execs).
      const health = (await proc.waitHealthy(20_000)) as { pid: number };
      expect(health.pid).toBe(proc.pid);
    }
    expect(seen).toEqual([1, 2]);
    const d = network.describe();
    expect(d.subnet).toMatch(/^10\.\d+\.\d+\.0\/24$/);
    expect(new Set(d.members.map((m) => m.address)).size).toBe(2);

    expect(probe("a", "b")).toBe("connected");
    expect(probe("b", "a")).toBe("connected");

    network.partition("a", "b");
    expect(network.describe().partitions).toEqual([{ a: "a", b: "b" }]);
    expect(probe("a", "b")).toBe("EACCES");
    expect(probe("b", "a")).toBe("EACCES");
    // The host (where lanes and clients run) still reaches both sides.
    for (const p of procs) await p.waitHealthy(5000);

    network.heal("a", "b");
    expect(network.describe().partitions).toEqual([]);
    expect(probe("a", "b")).toBe("connected");
    expect(probe("b", "a")).toBe("connected");

    // SIGTERM reaches the daemon itself: the stand-in exits 0 on SIGTERM.
    expect(await procs[0]!.stop(5000)).toEqual({ code: 0, signal: null });

    const namespaces = d.members.map((m) => m.namespace);
    const { bridge } = d;
    expect(network.destroy()).toEqual([]);
    const left = spawnSync(network.ip, ["netns", "list"], { encoding: "utf8" }).stdout;
    for (const ns of namespaces) expect(left).not.toContain(ns);
    const links = spawnSync(network.ip, ["-o", "link", "show"], { encoding: "utf8" }).stdout;
    expect(links).not.toContain(bridge);
    expect(links).not.toContain(`pv${d.id}`);
    // The daemon still running inside b was killed with its namespace.
    await pollUntil("b to be killed with its namespace", () => (procs[1]!.running ? undefined : true), {
      deadlineMs: 10_000,
    });
    expect(procs[1]!.exit).toEqual({ code: null, signal: "SIGKILL" });
  });
});

describe("a lane with --netns", () => {
  const workDir = mkdtempSync(join(tmpdir(), "test-cluster-netns-lane-"));
  afterAll(() => rmSync(workDir, { recursive: true, force: true }));

  it("writes network.json and removes the network even when a step fails (or refuses without root/ip)", async () => {
    let namespace = "";
    const lane: LaneDefinition = {
      name: "netns-demo-lane",
      description: "test",
      async run(ctx) {
        const m = ctx.network!.ensureMember("demo");
        namespace = m.namespace;
        await ctx.step("fails", () => {
          throw new Error("deliberate failure with a namespace up");
        });
      },
    };
    const result = await runLane(lane, { workDir, netns: true });
    expect(result.ok).toBe(false);
    if (!canRun) {
      expect(result.error).toMatch(/--netns needs (root|iproute2's `ip`)/);
      return;
    }
    expect(result.error).toMatch(/deliberate failure/);
    const network = JSON.parse(readFileSync(join(result.runDir, "network.json"), "utf8"));
    expect(network.members).toEqual([expect.objectContaining({ member: "demo", namespace })]);
    const ip = findIp()!;
    expect(spawnSync(ip, ["netns", "list"], { encoding: "utf8" }).stdout).not.toContain(namespace);
    expect(spawnSync(ip, ["-o", "link", "show"], { encoding: "utf8" }).stdout).not.toContain(network.bridge);
  });
});
