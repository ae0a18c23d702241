// Unit tests of the core through a synchronous in-process cluster: election, replication, commit.
import { describe, expect, it } from "vitest";
import { Harness } from "../sim/harness.js";
import { entriesDataBytes } from "./entry-size.js";
import { ProposalDroppedError } from "./errors.js";
import { ConfChangeType, EntryType, MessageType, StateRole } from "./types.js";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

function threeMembers(options = {}): Harness {
  const h = new Harness();
  for (const id of [1n, 2n, 3n]) h.addNode(id, { voters: [1n, 2n, 3n], learners: [] }, options);
  return h;
}

describe("RaftCore", () => {
  it("elects the member that campaigns and every member learns the leader", () => {
    // Proves a campaign wins with a majority and followers adopt the leader and term.
    const h = threeMembers();
    h.node(1n).core.campaign();
    h.stabilize();
    expect(h.node(1n).core.status().softState).toEqual({ lead: 1n, role: StateRole.Leader });
    for (const id of [2n, 3n]) {
      expect(h.node(id).core.status().softState).toEqual({ lead: 1n, role: StateRole.Follower });
      expect(h.node(id).core.status().hardState.term).toBe(1n);
    }
  });

  it("answers a lone voter's ReadIndex once an entry of its term commits, not from a commit index a crash left behind", () => {
    // Proves a single-member cluster restarted after kill -9 (its commit index is not written on its
    // own, so it restarts below writes it had acknowledged) does not serve a read that misses them.
    const h = new Harness();
    h.addNode(1n, { voters: [1n], learners: [] });
    h.node(1n).core.campaign();
    h.stabilize();
    h.node(1n).core.propose(enc("a"));
    h.stabilize();
    const n = h.node(1n);
    const acknowledged = n.storage.lastIndex();
    const hs = n.storage.hardStateNow();
    expect(hs.commit).toBe(acknowledged);
    n.storage.setHardState({ ...hs, commit: acknowledged - 1n });
    h.restart(1n);
    const reads: bigint[] = [];
    h.onReady = (_id, rd) => {
      for (const rs of rd.readStates) reads.push(rs.index);
    };
    h.stabilize(); // applies what it knows committed: up to the entry before "a"
    h.node(1n).core.campaign();
    expect(h.node(1n).core.status().softState.role).toBe(StateRole.Leader);
    h.node(1n).core.readIndex(enc("r"));
    h.stabilize();
    expect(reads).toHaveLength(1);
    expect(reads[0]).toBeGreaterThan(acknowledged);
  });

  it("replicates and commits a proposal on every member", () => {
    // Proves a proposal is appended, committed by a majority and applied everywhere in order.
    const h = threeMembers();
    h.node(1n).core.campaign();
    h.stabilize();
    h.node(1n).core.propose(enc("a"));
    h.node(2n).core.propose(enc("b")); // forwarded to the leader
    h.stabilize();
    for (const id of [1n, 2n, 3n]) {
      const normal = h.node(id).applied.filter((e) => e.type === EntryType.Normal && e.data.length > 0);
      expect(normal.map((e) => dec(e.data))).toEqual(["a", "b"]);
    }
  });

  it("commits without the minority and times out to a new election", () => {
    // Proves a majority suffices to commit and a follower campaigns after an election timeout.
    const h = threeMembers();
    h.node(1n).core.campaign();
    h.stabilize();
    h.cut.add("1-3");
    h.cut.add("2-3");
    h.node(1n).core.propose(enc("x"));
    h.stabilize();
    expect(h.node(2n).applied.some((e) => dec(e.data) === "x")).toBe(true);
    expect(h.node(3n).applied.some((e) => dec(e.data) === "x")).toBe(false);
    for (let i = 0; i < 30; i++) h.node(3n).core.tick();
    expect(h.node(3n).core.status().softState.role).toBe(StateRole.Candidate);
  });

  it("refuses a second membership change while one is pending", () => {
    // Proves only one conf change may be unapplied at a time.
    const h = threeMembers();
    h.node(1n).core.campaign();
    h.stabilize();
    const core = h.node(1n).core;
    core.proposeConfChange({ type: ConfChangeType.AddLearnerNode, nodeId: 4n, context: new Uint8Array() });
    expect(() =>
      core.proposeConfChange({ type: ConfChangeType.AddLearnerNode, nodeId: 5n, context: new Uint8Array() }),
    ).toThrow(ProposalDroppedError);
    h.stabilize();
    expect(core.status().confState.learners).toEqual([4n]);
  });

  it("lets UpdateNode through while a change is pending, without blocking the next change", () => {
    // Proves metadata-only changes are exempt from the one-pending rule in both directions.
    const h = threeMembers();
    h.node(1n).core.campaign();
    h.stabilize();
    const core = h.node(1n).core;
    const none = new Uint8Array();
    core.proposeConfChange({ type: ConfChangeType.AddLearnerNode, nodeId: 4n, context: none });
    core.proposeConfChange({ type: ConfChangeType.UpdateNode, nodeId: 2n, context: none });
    h.stabilize();
    core.proposeConfChange({ type: ConfChangeType.UpdateNode, nodeId: 3n, context: none });
    core.proposeConfChange({ type: ConfChangeType.AddLearnerNode, nodeId: 5n, context: none });
    h.stabilize();
    expect(core.status().confState).toEqual({ voters: [1n, 2n, 3n], learners: [4n, 5n] });
  });

  it("counts the leader's own entries toward the commit only after they are persisted", () => {
    // Proves the Ready contract: a single voter commits its entry in the Ready after the one that persisted it.
    const h = new Harness();
    const core = h.addNode(1n, { voters: [1n], learners: [] }).core;
    core.campaign();
    h.stabilize();
    core.propose(enc("solo"));
    const rd = core.ready();
    expect(rd.entries.map((e) => dec(e.data))).toEqual(["solo"]);
    expect(rd.committedEntries).toEqual([]);
    h.node(1n).storage.append(rd.entries);
    core.advance(rd);
    const next = core.ready();
    expect(next.committedEntries.map((e) => dec(e.data))).toEqual(["solo"]);
    core.advance(next);
  });

  it("lets the driver step messages while a Ready is outstanding", () => {
    // Proves stepping between ready() and advance() loses nothing and hasReady waits for advance.
    const h = threeMembers();
    h.node(1n).core.campaign();
    h.stabilize();
    const leader = h.node(1n).core;
    leader.propose(enc("p1"));
    const rd = leader.ready();
    leader.propose(enc("p2"));
    expect(leader.hasReady()).toBe(false);
    h.node(1n).storage.append(rd.entries);
    h.queue.push(...rd.messages);
    leader.advance(rd);
    h.stabilize();
    const data = h.node(3n).applied.filter((e) => e.data.length > 0 && e.type === EntryType.Normal);
    expect(data.map((e) => dec(e.data))).toEqual(["p1", "p2"]);
  });

  /**
   * A leader with 40 entries of 50 bytes that follower 3 missed (cut off), with messages of at most
   * 100 bytes: returns, per Ready of the leader, the entry bytes it sent to 3, and checks that every
   * member applied all 40 in order.
   */
  function catchUp(options: { inflightBytesMax?: number; committedBytesPerReadyMax?: number }) {
    const h = threeMembers({ msgBytesMax: 100, ...options });
    h.node(1n).core.campaign();
    h.stabilize();
    h.cut.add("1-3");
    h.cut.add("2-3");
    const values = Array.from({ length: 40 }, (_, i) => `${String(i).padStart(2, "0")}${"v".repeat(48)}`);
    for (const v of values) h.node(1n).core.propose(enc(v));
    h.stabilize();
    const sentToThree: number[] = [];
    const committedBytes: number[] = [];
    h.onReady = (id, rd) => {
      if (id === 1n) {
        const apps = rd.messages.filter((m) => m.to === 3n && m.type === MessageType.App);
        if (apps.length > 0) sentToThree.push(apps.reduce((n, m) => n + entriesDataBytes(m.entries), 0));
      }
      if (rd.committedEntries.length > 1) committedBytes.push(entriesDataBytes(rd.committedEntries));
    };
    h.cut.clear();
    // Heartbeats reach 3 again; it answers, and the leader finds where its log ends.
    for (let i = 0; i < 3 && h.node(3n).applied.length < h.node(1n).applied.length; i++) {
      h.node(1n).core.tick();
      h.stabilize();
    }
    for (const id of [1n, 2n, 3n]) {
      const data = h.node(id).applied.filter((e) => e.data.length > 0 && e.type === EntryType.Normal);
      expect(
        data.map((e) => dec(e.data)),
        `member ${id}`,
      ).toEqual(values);
    }
    return { sentToThree, committedBytes };
  }

  it("feeds a follower that is far behind at most inflightBytesMax of entries per round trip", () => {
    // Proves the byte bound of the inflight window: without it the leader sends all the backlog
    // that its probe did not carry (100 bytes) to the returning follower in one Ready; with it,
    // 300 bytes (three 100-byte messages) at a time.
    const unbounded = catchUp({});
    expect(Math.max(...unbounded.sentToThree)).toBe(1900);
    const bounded = catchUp({ inflightBytesMax: 300 });
    expect(Math.max(...bounded.sentToThree)).toBe(300);
    expect(bounded.sentToThree.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(2000);
  });

  it("hands out a backlog of committed entries committedBytesPerReadyMax at a time", () => {
    // Proves the bound on committed entries per Ready: 120 bytes is two 50-byte entries.
    const { committedBytes } = catchUp({ committedBytesPerReadyMax: 120 });
    expect(committedBytes.length).toBeGreaterThan(0);
    expect(Math.max(...committedBytes)).toBeLessThanOrEqual(120);
    const whole = catchUp({ committedBytesPerReadyMax: 1 << 20 });
    expect(Math.max(...whole.committedBytes)).toBeGreaterThan(120);
  });
});
