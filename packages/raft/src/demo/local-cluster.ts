// Starts Raft members on loopback in this process (one gRPC server each, ephemeral ports), each
// with its own SQLite log and AppendLogMachine. Used by the demo, the tests and the benchmark.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import type { MemberInfo } from "../service/members.js";
import { RaftService, type RaftServiceConfig } from "../service/raft-service.js";
import { AppendLogMachine } from "../service/sqlite-test-machine.js";

export interface LocalMember {
  id: bigint;
  service: RaftService;
  machine: AppendLogMachine;
  server: grpc.Server;
  url: string;
  dataDir: string;
}

export type MemberOptions = Partial<Omit<RaftServiceConfig, "id" | "dataDir" | "initialMembers">> & {
  /** The machine's own file is the snapshot (StateMachine.persist), as in the daemons. */
  persistMachine?: boolean;
};

/** Binds a gRPC server on 127.0.0.1 with an ephemeral port (or `port`). */
export function bindServer(port = 0): Promise<{ server: grpc.Server; url: string }> {
  const server = new grpc.Server({ "grpc.max_receive_message_length": 256 << 20 });
  return new Promise((resolve, reject) => {
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => {
      if (err !== null) reject(err);
      else resolve({ server, url: `http://127.0.0.1:${p}` });
    });
  });
}

/** Creates and starts one member whose server is already bound. */
export function startMember(
  id: bigint,
  bound: { server: grpc.Server; url: string },
  baseDir: string,
  initialMembers: readonly MemberInfo[],
  opts: MemberOptions = {},
): LocalMember {
  const dataDir = join(baseDir, `member-${id}`);
  mkdirSync(dataDir, { recursive: true });
  const { persistMachine, ...config } = opts;
  const machine = new AppendLogMachine(join(dataDir, "app.db"), { persist: persistMachine });
  const service = new RaftService({ ...config, id, dataDir, initialMembers }, machine);
  service.register(bound.server);
  service.start();
  return { id, service, machine, server: bound.server, url: bound.url, dataDir };
}

export async function startLocalCluster(
  size: number,
  baseDir: string,
  opts: MemberOptions = {},
): Promise<LocalMember[]> {
  const bound = await Promise.all(Array.from({ length: size }, () => bindServer()));
  const members: MemberInfo[] = bound.map((b, i) => ({
    id: BigInt(i + 1),
    name: `m${i + 1}`,
    peerUrls: [b.url],
    clientUrls: [],
    isLearner: false,
  }));
  return bound.map((b, i) => startMember(BigInt(i + 1), b, baseDir, members, opts));
}

export function stopMember(m: LocalMember): void {
  m.service.stop();
  m.server.forceShutdown();
}
