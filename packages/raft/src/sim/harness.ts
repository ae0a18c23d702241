// A tiny in-process cluster for unit and interaction tests: each member is a RaftCore over a
// MemoryStorage, Ready batches are handled synchronously in contract order (persist, send, apply,
// advance), and messages wait in one queue until delivered or dropped. No randomness beyond the
// seeded election timeouts, no clock: tests drive it step by step.
import { decodeConfChange } from "../core/conf-change-codec.js";
import { MemoryStorage } from "../core/memory-storage.js";
import { RaftCore, type RaftConfig } from "../core/raft-core.js";
import { SeededRandom } from "../core/random.js";
import {
  type ConfState,
  type Entry,
  EntryType,
  type Message,
  type NodeId,
  type RaftLogger,
  type Ready,
} from "../core/types.js";

export const SILENT_LOGGER: RaftLogger = { debug() {}, info() {}, warn() {}, error() {} };

export interface HarnessNode {
  readonly id: NodeId;
  core: RaftCore;
  storage: MemoryStorage;
  /** Entries applied to this member's state machine, in order. */
  applied: Entry[];
  /** The configuration after the last applied conf change (or snapshot). */
  confState: ConfState;
}

export type HarnessOptions = Partial<Omit<RaftConfig, "id" | "storage" | "random" | "logger" | "applied">>;

export const DEFAULT_OPTIONS: Required<HarnessOptions> = {
  electionTicks: 10,
  heartbeatTicks: 1,
  msgBytesMax: 1 << 20,
  inflightMsgsMax: 256,
  inflightBytesMax: 0,
  committedBytesPerReadyMax: 1 << 20,
  uncommittedBytesMax: 0,
  preVote: false,
  checkQuorum: false,
  disableProposalForwarding: false,
};

export class Harness {
  readonly nodes = new Map<NodeId, HarnessNode>();
  /** Messages sent and not yet delivered, in send order. */
  queue: Message[] = [];
  /** Pairs of members that cannot talk (both directions). */
  readonly cut = new Set<string>();
  onReady: ((id: NodeId, rd: Ready) => void) | undefined;
  onApply: ((id: NodeId, e: Entry) => void) | undefined;

  addNode(
    id: NodeId,
    init: { voters: NodeId[]; learners: NodeId[] },
    options: HarnessOptions = {},
  ): HarnessNode {
    const storage = new MemoryStorage(init);
    const node: HarnessNode = {
      id,
      storage,
      core: this.makeCore(id, storage, 0n, options),
      applied: [],
      confState: storage.initialState().confState,
    };
    this.nodes.set(id, node);
    return node;
  }

  makeCore(id: NodeId, storage: MemoryStorage, applied: bigint, options: HarnessOptions): RaftCore {
    return new RaftCore({
      ...DEFAULT_OPTIONS,
      ...options,
      id,
      storage,
      applied,
      // Fixed per-member seeds keep the election timeouts, hence every trace, reproducible.
      random: new SeededRandom(id * 7919n),
      logger: SILENT_LOGGER,
    });
  }

  node(id: NodeId): HarnessNode {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`no member ${id}`);
    return n;
  }

  /** Handles one Ready of `id` if it has one. Returns whether it did. */
  processReady(id: NodeId): boolean {
    const n = this.node(id);
    if (!n.core.hasReady()) return false;
    const rd = n.core.ready();
    this.onReady?.(id, rd);
    if (rd.snapshot !== null) n.storage.applySnapshot(rd.snapshot);
    n.storage.append(rd.entries);
    if (rd.hardState !== null) n.storage.setHardState(rd.hardState);
    for (const m of rd.messages) this.queue.push(m);
    if (rd.snapshot !== null) {
      n.applied = [];
      n.confState = rd.snapshot.metadata.confState;
    }
    for (const e of rd.committedEntries) this.apply(n, e);
    n.core.advance(rd);
    return true;
  }

  private apply(n: HarnessNode, e: Entry): void {
    n.applied.push(e);
    if (e.type === EntryType.ConfChange) n.confState = n.core.applyConfChange(decodeConfChange(e.data));
    this.onApply?.(n.id, e);
  }

  isCut(a: NodeId, b: NodeId): boolean {
    return this.cut.has(`${a}-${b}`) || this.cut.has(`${b}-${a}`);
  }

  /** Delivers queued messages addressed to `to` (all members when omitted). Returns how many. */
  deliver(to?: ReadonlySet<NodeId>, onDeliver?: (m: Message, dropped: boolean) => void): number {
    const keep: Message[] = [];
    const take: Message[] = [];
    for (const m of this.queue) (to === undefined || to.has(m.to) ? take : keep).push(m);
    this.queue = keep;
    for (const m of take) {
      const target = this.nodes.get(m.to);
      const dropped = target === undefined || this.isCut(m.from, m.to);
      onDeliver?.(m, dropped);
      if (!dropped) this.stepQuietly(target, m);
    }
    return take.length;
  }

  /** Steps a message; a dropped forwarded proposal is an expected outcome, not a test failure. */
  private stepQuietly(target: HarnessNode, m: Message): void {
    try {
      target.core.step(m);
    } catch (e) {
      if ((e as { code?: string }).code !== "RAFT_PROPOSAL_DROPPED") throw e;
    }
  }

  /** Drops queued messages addressed to `to` (all when omitted). */
  drop(to?: ReadonlySet<NodeId>): Message[] {
    const dropped = this.queue.filter((m) => to === undefined || to.has(m.to));
    this.queue = this.queue.filter((m) => !(to === undefined || to.has(m.to)));
    return dropped;
  }

  /** Processes Readies and delivers messages until nothing moves (bounded). */
  stabilize(onDeliver?: (m: Message, dropped: boolean) => void, roundsMax = 1000): void {
    for (let round = 0; round < roundsMax; round++) {
      let moved = false;
      for (const id of [...this.nodes.keys()].sort(compareIds)) moved = this.processReady(id) || moved;
      if (this.queue.length > 0) {
        this.deliver(undefined, onDeliver);
        moved = true;
      }
      if (!moved) return;
    }
    throw new Error(`cluster did not stabilize within ${roundsMax} rounds`);
  }

  /** Restarts `id` from its storage, as after a crash (MemoryStorage here holds only synced data). */
  restart(id: NodeId, options: HarnessOptions = {}): void {
    const n = this.node(id);
    const snap = n.storage.snapshot();
    n.core = this.makeCore(id, n.storage, snap.metadata.index, options);
    n.applied = [];
    n.confState = n.storage.initialState().confState;
  }
}

export function compareIds(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
