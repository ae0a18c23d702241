// A single-member stand-in for the Raft layer: proposals are applied straight to the state machine,
// batched like the real driver (every proposal made in the same tick goes into one applyBatch).
import { randomBytes } from "node:crypto";
import type { ApplyEntry, Replicated, StateMachine } from "@photoncloud/raft";

interface Pending {
  command: Uint8Array;
  resolve: (value: { result: Uint8Array; index: bigint }) => void;
  reject: (err: unknown) => void;
}

export class LocalReplicated implements Replicated {
  private queue: Pending[] = [];
  private index: bigint;

  constructor(
    private readonly machine: StateMachine,
    private readonly term = 1n,
  ) {
    this.index = machine.appliedIndex();
  }

  propose(command: Uint8Array): Promise<{ result: Uint8Array; index: bigint }> {
    return new Promise((resolve, reject) => {
      this.queue.push({ command, resolve, reject });
      if (this.queue.length === 1) setImmediate(() => this.flush());
    });
  }

  linearizableRead<T>(read: () => T): Promise<T> {
    return new Promise((resolve, reject) => {
      try {
        resolve(read());
      } catch (err) {
        reject(err);
      }
    });
  }

  serializableRead<T>(read: () => T): T {
    return read();
  }

  private flush(): void {
    const batch = this.queue;
    this.queue = [];
    const entries: ApplyEntry[] = batch.map((pending) => ({
      index: ++this.index,
      term: this.term,
      timestampMs: Date.now(),
      seed: randomBytes(8).readBigUInt64BE(),
      command: pending.command,
    }));
    try {
      const results = this.machine.applyBatch(entries);
      batch.forEach((pending, i) => {
        pending.resolve({ result: results[i]!, index: entries[i]!.index });
      });
    } catch (err) {
      for (const pending of batch) pending.reject(err);
    }
  }
}
