// A single-member stand-in for the Raft layer: every proposal is applied at once as the next log
// entry, stamped like a leader would stamp it. For handler tests and for running flaredb without
// replication; it is not a Raft implementation.

import { randomBytes } from "node:crypto";
import type { ApplyEntry } from "@photoncloud/raft";
import type { ReplicatedDb } from "../api/replicated-db.js";
import type { SqlStateMachine } from "../sql/state-machine.js";

export class LocalReplicated implements ReplicatedDb {
  /** Every entry applied, in order: lets tests feed the same log to other state machines. */
  readonly log: ApplyEntry[] = [];
  leader = true;
  contactMs = 0;

  constructor(
    private readonly sm: SqlStateMachine,
    private readonly clock: () => number = Date.now,
  ) {}

  async propose(command: Uint8Array): Promise<{ result: Uint8Array; index: bigint }> {
    const entry: ApplyEntry = {
      index: this.sm.appliedIndex() + 1n,
      term: 1n,
      timestampMs: this.clock(),
      seed: randomBytes(8).readBigUInt64BE(),
      command,
    };
    const [result] = this.sm.applyBatch([entry]);
    this.log.push(entry);
    return { result: result!, index: entry.index };
  }

  async linearizableRead<T>(read: () => T): Promise<T> {
    return read();
  }

  serializableRead<T>(read: () => T): T {
    return read();
  }

  isLeader(): boolean {
    return this.leader;
  }

  lastContactMs(): number {
    return this.contactMs;
  }
}
