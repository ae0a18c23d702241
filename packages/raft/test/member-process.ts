// One Raft member in its own process for the multi-process test. argv: id, port, dataDir,
// members JSON. stdin lines: "propose <tag> <text>" | "info" | "transfer <id>"; stdout lines: "ack <tag> <index>",
// "err <tag> <message>", "info <applied> <role> <commands>".
import { createInterface } from "node:readline";
import { bindServer, startMember } from "../src/demo/local-cluster.js";
import { memberFromJson } from "../src/service/members.js";

const [idArg, portArg, dataDir, membersJson] = process.argv.slice(2);
const members = (JSON.parse(membersJson as string) as Parameters<typeof memberFromJson>[0][]).map(
  memberFromJson,
);
const bound = await bindServer(Number(portArg));
const m = startMember(BigInt(idArg as string), bound, dataDir as string, members, {
  tickMs: Number(process.env.RAFT_TICK_MS ?? 20),
  electionTicks: Number(process.env.RAFT_ELECTION_TICKS ?? 10),
  snapshotEntries: Number(process.env.RAFT_SNAPSHOT_ENTRIES ?? 10_000),
  snapshotTailEntries: Math.floor(Number(process.env.RAFT_SNAPSHOT_ENTRIES ?? 10_000) / 4),
  requestTimeoutMs: 5000,
});
const out = (s: string) => process.stdout.write(`${s}\n`);
createInterface({ input: process.stdin }).on("line", (line) => {
  const [cmd, tag, ...rest] = line.split(" ");
  if (cmd === "propose") {
    m.service.propose(new TextEncoder().encode(rest.join(" "))).then(
      (r) => out(`ack ${tag} ${r.index}`),
      (e: Error) => {
        process.stderr.write(`member ${idArg}: proposal ${tag} failed: ${e.message}\n`);
        out(`err ${tag} ${e.message.replace(/\n/g, " ")}`);
      },
    );
  } else if (cmd === "transfer") {
    if (m.service.status().role === "leader") m.service.transferLeader(BigInt(tag as string)).catch(() => {});
  } else if (cmd === "info") {
    out(`info ${m.service.node.appliedIndex()} ${m.service.status().role} ${m.machine.commands().length}`);
  }
});
process.on("SIGTERM", () => {
  m.service.stop();
  m.server.forceShutdown();
  process.exit(0);
});
out("ready");
