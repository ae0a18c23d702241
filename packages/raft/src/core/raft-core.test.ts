// Unit tests of the core through a synchronous in-process cluster: election, replication, commit.
import { describe, expect, it } from "vitest";
import { Harness } from "../sim/harness.js";
import { ProposalDroppedError } from "./errors.js";
import { ConfChangeType, EntryType, StateRole } from "./types.js";

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
});
