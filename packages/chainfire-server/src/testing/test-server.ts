// A single-member chainfire test server: MVCC store + watch hub + the etcd services on a real
// grpc-js server bound to an ephemeral loopback port, with LocalReplicated in place of Raft.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Server, ServerCredentials } from "@grpc/grpc-js";
import type { EtcdApiContext } from "../api/context.js";
import { addEtcdServices } from "../api/server.js";
import type { WatchServiceOptions } from "../api/watch-service.js";
import { LeaseDriver } from "../mvcc/lease-driver.js";
import { MvccStore, type MvccStoreOptions } from "../mvcc/store.js";
import { WatchHub, type WatchHubOptions } from "../watch/watch-hub.js";
import { LocalReplicated } from "./local-replicated.js";

export interface TestServer {
  readonly endpoint: string;
  readonly store: MvccStore;
  readonly hub: WatchHub;
  /** Proposes expiries and checkpoints every 50 ms; `tick()` runs a round now. */
  readonly leaseDriver: LeaseDriver;
  stop(): Promise<void>;
}

export interface TestServerOptions {
  store?: Partial<MvccStoreOptions>;
  hub?: WatchHubOptions;
  watch?: WatchServiceOptions;
  watchFragmentBytesMax?: number;
  maxRequestBytes?: number;
  /** The leader this member knows (default: itself); 0n for none. */
  leaderId?: () => bigint;
  /** See EtcdApiContext.leaderCheckMs. */
  leaderCheckMs?: number;
  /** How far the API's lease clock (keep-alives, time-to-live) runs ahead of the lease driver's. */
  apiClockAheadMs?: number;
}

export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), "chainfire-test-"));
  const store = new MvccStore({ path: join(dir, "mvcc.db"), ...options.store });
  store.lessor.promote(store.lessor.nowMs());
  const hub = new WatchHub(store, options.hub);
  const replicated = new LocalReplicated(store);
  const leaseDriver = new LeaseDriver(replicated, store, {
    intervalMs: 50,
    leasesPerProposalMax: 1000,
  });
  leaseDriver.start();
  const ctx: EtcdApiContext = {
    replicated,
    store,
    hub,
    member: {
      clusterId: 0xc1a5_7e12n,
      memberId: 0x8e9e_05c5_2164_694dn,
      raftTerm: () => 2n,
      leaderId: options.leaderId ?? (() => 0x8e9e_05c5_2164_694dn),
      raftIndex: () => store.appliedIndex(),
      isLearner: () => false,
    },
    version: "3.4.0",
    // The daemon's at its default --max-request-bytes (1.5 MiB, plus etcd's 512 KiB gRPC allowance).
    watchFragmentBytesMax: options.watchFragmentBytesMax ?? 2048 * 1024,
    maxRequestBytes: options.maxRequestBytes ?? 1536 * 1024,
    nowMs: () => store.lessor.nowMs() + (options.apiClockAheadMs ?? 0),
    ...(options.leaderCheckMs === undefined ? {} : { leaderCheckMs: options.leaderCheckMs }),
  };
  const server = new Server();
  addEtcdServices(server, ctx, options.watch);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, bound) =>
      err ? reject(err) : resolve(bound),
    );
  });
  return {
    endpoint: `127.0.0.1:${port}`,
    store,
    hub,
    leaseDriver,
    stop: async () => {
      // Open watch streams would hold a graceful shutdown forever; tests end them by force.
      server.forceShutdown();
      leaseDriver.stop();
      hub.close();
      store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
