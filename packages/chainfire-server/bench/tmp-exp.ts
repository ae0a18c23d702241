import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
import { mkdtempSync } from "node:fs";
import { Metadata } from "@grpc/grpc-js";
import { createClients, etcd } from "@photoncloud/chainfire-api";
import { processCpuMicros, runH2Load } from "@photoncloud/daemon/bench";
import { putRequest } from "../src/mvcc/messages.js";
import { Cluster } from "./cluster.js";
const kind = (process.env.KIND ?? "chainfire") as "chainfire" | "etcd";
const cluster = await Cluster.start({
  kind,
  dir: mkdtempSync("/tmp/zzexp-"),
  nodeArgs: (process.env.NODEARGS ?? "").split(" ").filter(Boolean),
});
if (process.env.GCLOG)
  for (const m of cluster.members)
    m.process!.stdout!.on("data", (d: Buffer) => {
      for (const line of d.toString().split("\n"))
        if (/Scavenge|Mark-Compact|Mark-sweep/.test(line))
          require("node:fs").appendFileSync(process.env.GCLOG!, `${m.name} ${line}\n`);
    });
const clients = cluster.members.map((m) => createClients(m.endpoint));
let leader = 0;
for (const [i, c] of clients.entries()) {
  const r: any = await new Promise((res) =>
    c.maintenance.status({}, new Metadata(), { deadline: Date.now() + 3000 }, (e: any, r: any) => res(r)),
  );
  if (r && r.leader === r.header?.memberId) leader = i;
}
const body = etcd.PutRequest.encode(
  putRequest({ key: Buffer.from("h2load"), value: Buffer.alloc(256, 7) }),
).finish();
const pids = cluster.members.map((m) => m.process!.pid!);
for (const inflight of (process.env.INF ?? "16,128").split(",").map(Number))
  for (const mode of (process.env.MODES ?? "leader,spread").split(",")) {
    const c0 = pids.map(processCpuMicros);
    const targets = mode === "leader" ? [cluster.members[leader]!] : cluster.members;
    const runs = await Promise.all(
      targets.map((m, i) =>
        runH2Load({
          target: `http://${m.endpoint}`,
          path: "/etcdserverpb.KV/Put",
          request: body,
          inFlight: mode === "leader" ? inflight : Math.floor(inflight / 3) + (i < inflight % 3 ? 1 : 0),
          durationMs: 3000,
        }),
      ),
    );
    const n = runs.reduce((a, r) => a + r.succeeded, 0);
    const cpu = pids.map((p, i) => Math.round((processCpuMicros(p) - c0[i]!) / n));
    console.log(
      runs
        .map(
          (r, i) =>
            `${mode === "leader" ? leader : i}:p50=${r.p50Ms?.toFixed?.(1)} p99=${r.p99Ms.toFixed(1)} n=${r.succeeded}`,
        )
        .join("  "),
    );
    console.log(
      kind,
      mode,
      `put@${inflight}`,
      Math.round(n / runs[0]!.seconds),
      "/s p99",
      Math.max(...runs.map((r) => r.p99Ms)).toFixed(1),
      "cpu",
      cpu.join("/"),
      "leader",
      leader,
    );
  }
for (const c of clients) c.close();
await cluster.stopGracefully();
