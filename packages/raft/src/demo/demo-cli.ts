// The demo: a 3-member Raft cluster on loopback in one process (data under ./work/raft-demo/). It
// proposes a counter entry every second, takes each line typed on stdin as a proposal, prints every
// commit as each member applies it, and stops cleanly on Ctrl-C / SIGTERM.
import { rmSync } from "node:fs";
import { createInterface } from "node:readline";
import type { ApplyEntry } from "../service/state-machine.js";
import { type LocalMember, startLocalCluster, stopMember } from "./local-cluster.js";

const DATA_DIR = "work/raft-demo";

function printApplied(members: LocalMember[]): void {
  for (const m of members) {
    const machine = m.machine;
    const orig = machine.applyBatch.bind(machine);
    machine.applyBatch = (entries: readonly ApplyEntry[]) => {
      for (const e of entries) {
        const text = new TextDecoder().decode(e.command);
        console.log(`member ${m.id} applied index=${e.index} term=${e.term} data=${JSON.stringify(text)}`);
      }
      return orig(entries);
    };
  }
}

async function main(): Promise<void> {
  // A fresh cluster each run: ports are ephemeral, so old member URLs would be stale.
  rmSync(DATA_DIR, { recursive: true, force: true });
  const members = await startLocalCluster(3, DATA_DIR, { tickMs: 50 });
  printApplied(members);
  console.log(`raft demo: 3 members on ${members.map((m) => m.url).join(", ")}; data in ${DATA_DIR}/`);
  console.log("type a line and press Enter to propose it; Ctrl-C stops");
  let counter = 0;
  const propose = (text: string) => {
    const m = members[counter % members.length] as LocalMember;
    m.service.propose(new TextEncoder().encode(text)).catch((err: Error) => {
      console.error(`proposal "${text}" failed: ${err.message}`);
    });
  };
  const timer = setInterval(() => propose(`counter ${++counter}`), 1000);
  const rl = createInterface({ input: process.stdin });
  rl.on("line", (line) => {
    if (line.trim() !== "") propose(line.trim());
  });
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    clearInterval(timer);
    rl.close();
    for (const m of members) stopMember(m);
    console.log("raft demo: stopped");
    process.exit(0);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
