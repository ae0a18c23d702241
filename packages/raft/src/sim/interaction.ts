// The interpreter behind the testdata/*.txt interaction tests (in the style of etcd-raft's
// datadriven tests): each command drives the in-process Harness and returns a readable trace.
// A script file is a sequence of blocks:
//
//   command arg key=value key=(1,2)
//   ----
//   expected output (no blank lines)
//
// Blocks are separated by blank lines; lines starting with # are comments.
import { decodeConfChange } from "../core/conf-change-codec.js";
import { ProposalDroppedError } from "../core/errors.js";
import {
  type ConfChange,
  ConfChangeType,
  type ConfState,
  type Entry,
  EntryType,
  type Message,
  MessageType,
  type NodeId,
  type Ready,
  StateRole,
} from "../core/types.js";
import { compareIds, Harness, type HarnessOptions } from "./harness.js";

export interface Block {
  readonly command: string;
  readonly expected: string;
  /** 1-based line of the command, for error messages. */
  readonly line: number;
}

export function parseScript(text: string): Block[] {
  const lines = text.split("\n");
  const blocks: Block[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i] as string;
    if (line.trim() === "" || line.startsWith("#")) {
      i++;
      continue;
    }
    const start = i;
    if (lines[i + 1] !== "----") throw new Error(`line ${start + 1}: expected "----" after the command`);
    i += 2;
    const out: string[] = [];
    while (i < lines.length && (lines[i] as string).trim() !== "") out.push(lines[i++] as string);
    blocks.push({ command: line, expected: out.join("\n"), line: start + 1 });
  }
  return blocks;
}

export function formatScript(
  blocks: readonly { command: string; output: string }[],
  comments: Map<number, string[]>,
): string {
  const parts: string[] = [];
  blocks.forEach((b, i) => {
    const pre = comments.get(i) ?? [];
    parts.push([...pre, b.command, "----", b.output].join("\n"));
  });
  return `${parts.join("\n\n")}\n`;
}

interface Args {
  positional: string[];
  named: Map<string, string>;
}

function parseArgs(command: string): { name: string; args: Args } {
  const tokens = command.match(/\S+=\([^)]*\)|\S+/g) ?? [];
  const [name, ...rest] = tokens;
  const args: Args = { positional: [], named: new Map() };
  for (const t of rest) {
    const eq = t.indexOf("=");
    if (eq > 0) args.named.set(t.slice(0, eq), t.slice(eq + 1));
    else args.positional.push(t);
  }
  return { name: name ?? "", args };
}

function idList(value: string | undefined): NodeId[] {
  if (value === undefined) return [];
  const inner = value.replace(/^\(/, "").replace(/\)$/, "").trim();
  return inner === "" ? [] : inner.split(",").map((s) => BigInt(s.trim()));
}

const ROLE_NAMES: Record<StateRole, string> = {
  [StateRole.Follower]: "follower",
  [StateRole.Candidate]: "candidate",
  [StateRole.Leader]: "leader",
  [StateRole.PreCandidate]: "pre-candidate",
};

const TYPE_NAMES = Object.fromEntries(Object.entries(MessageType).map(([k, v]) => [v, k])) as Record<
  number,
  string
>;

function describeConfChange(cc: ConfChange): string {
  const prefix = ["v", "l", "r", "u"][cc.type];
  return `${prefix}${cc.nodeId}`;
}

export function describeEntry(e: Entry): string {
  const body =
    e.type === EntryType.ConfChange
      ? `conf:${describeConfChange(decodeConfChange(e.data))}`
      : `"${new TextDecoder().decode(e.data)}"`;
  return `${e.term}/${e.index} ${body}`;
}

function describeConf(cs: ConfState): string {
  return `voters=(${cs.voters.join(",")}) learners=(${cs.learners.join(",")})`;
}

export function describeMessage(m: Message): string {
  const parts = [`${m.from}->${m.to} ${TYPE_NAMES[m.type]} term=${m.term}`];
  switch (m.type) {
    case MessageType.App:
      parts.push(`log=${m.logTerm}/${m.index} commit=${m.commit}`);
      if (m.entries.length > 0) parts.push(`entries=[${m.entries.map(describeEntry).join(", ")}]`);
      break;
    case MessageType.AppResp:
      parts.push(`index=${m.index}`);
      if (m.reject) parts.push(`rejected hint=${m.logTerm}/${m.rejectHint}`);
      break;
    case MessageType.Vote:
    case MessageType.PreVote:
      parts.push(`log=${m.logTerm}/${m.index}`);
      if (m.context.length > 0) parts.push("transfer");
      break;
    case MessageType.VoteResp:
    case MessageType.PreVoteResp:
      if (m.reject) parts.push("rejected");
      break;
    case MessageType.Heartbeat:
      parts.push(`commit=${m.commit}`);
      break;
    case MessageType.Snap:
      if (m.snapshot !== null) {
        const md = m.snapshot.metadata;
        parts.push(`snapshot=${md.term}/${md.index} ${describeConf(md.confState)}`);
      }
      break;
    case MessageType.Prop:
      parts.push(`entries=[${m.entries.map(describeEntry).join(", ")}]`);
      break;
    case MessageType.ReadIndexResp:
      parts.push(`index=${m.index}`);
      break;
    default:
  }
  if (m.context.length > 0 && m.type !== MessageType.Vote && m.type !== MessageType.PreVote) {
    parts.push(`ctx=${new TextDecoder().decode(m.context)}`);
  }
  return parts.join(" ");
}

function describeReady(id: NodeId, rd: Ready): string[] {
  const out = [`> ${id} handling Ready${rd.mustSync ? " (sync)" : ""}`];
  if (rd.softState !== null) out.push(`  role=${ROLE_NAMES[rd.softState.role]} lead=${rd.softState.lead}`);
  if (rd.hardState !== null) {
    const hs = rd.hardState;
    out.push(`  hard-state term=${hs.term} vote=${hs.vote} commit=${hs.commit}`);
  }
  if (rd.snapshot !== null) {
    const md = rd.snapshot.metadata;
    out.push(`  snapshot ${md.term}/${md.index} ${describeConf(md.confState)}`);
  }
  for (const e of rd.entries) out.push(`  append ${describeEntry(e)}`);
  for (const e of rd.committedEntries) out.push(`  apply ${describeEntry(e)}`);
  for (const rs of rd.readStates)
    out.push(`  read-state index=${rs.index} ctx=${new TextDecoder().decode(rs.requestCtx)}`);
  for (const m of rd.messages) out.push(`  send ${describeMessage(m)}`);
  return out;
}

/** One interaction environment: a Harness plus the command interpreter. */
export class InteractionEnv {
  readonly h = new Harness();
  private out: string[] = [];
  private verbose = true;

  constructor() {
    this.h.onReady = (id, rd) => {
      if (this.verbose) this.out.push(...describeReady(id, rd));
    };
    this.h.onApply = (id, e) => {
      if (e.type === EntryType.ConfChange && this.verbose) {
        this.out.push(`  ${id} conf now ${describeConf(this.h.node(id).confState)}`);
      }
    };
  }

  run(command: string): string {
    this.out = [];
    const { name, args } = parseArgs(command);
    try {
      this.dispatch(name, args);
    } catch (e) {
      if (e instanceof ProposalDroppedError) this.out.push(`error: ${e.message}`);
      else throw e;
    }
    return this.out.length === 0 ? "ok" : this.out.join("\n");
  }

  private id(args: Args, at = 0): NodeId {
    const v = args.positional[at];
    if (v === undefined) throw new Error("missing member ID");
    return BigInt(v);
  }

  private dispatch(name: string, args: Args): void {
    const handler = this.commands[name];
    if (handler === undefined) throw new Error(`unknown command "${name}"`);
    handler(args);
  }

  private readonly commands: Record<string, (args: Args) => void> = {
    "add-nodes": (args) => this.addNodes(args),
    campaign: (args) => this.h.node(this.id(args)).core.campaign(),
    stabilize: (args) => this.stabilize(args),
    "process-ready": (args) => {
      for (const v of args.positional) this.h.processReady(BigInt(v));
    },
    "deliver-msgs": (args) => this.deliverMsgs(args),
    propose: (args) =>
      this.h.node(this.id(args)).core.propose(new TextEncoder().encode(args.positional[1] ?? "")),
    "propose-conf-change": (args) =>
      this.h.node(this.id(args)).core.proposeConfChange(parseConfChange(args.positional[1] ?? "")),
    "transfer-leadership": (args) =>
      this.h
        .node(BigInt(args.named.get("from") ?? "0"))
        .core.transferLeader(BigInt(args.named.get("to") ?? "0")),
    "read-index": (args) =>
      this.h.node(this.id(args)).core.readIndex(new TextEncoder().encode(args.positional[1] ?? "")),
    "tick-election": (args) => this.tickElection(this.id(args)),
    "tick-heartbeat": (args) => this.tickTimes(this.id(args), 1),
    compact: (args) => this.compact(this.id(args), BigInt(args.positional[1] ?? "0")),
    isolate: (args) => this.isolate(this.id(args)),
    heal: () => this.h.cut.clear(),
    restart: (args) => this.h.restart(this.id(args), this.optionsOf(args)),
    status: (args) => this.status(this.id(args)),
    "raft-state": () => this.raftState(),
    "raft-log": (args) => this.raftLog(this.id(args)),
    "log-level": (args) => {
      this.verbose = args.positional[0] !== "none";
    },
  };

  private optionsOf(args: Args): HarnessOptions {
    return {
      preVote: args.named.get("prevote") === "true",
      checkQuorum: args.named.get("checkquorum") === "true",
    };
  }

  private addNodes(args: Args): void {
    const count = Number(args.positional[0] ?? "1");
    const voters = idList(args.named.get("voters"));
    const learners = idList(args.named.get("learners"));
    for (let i = 0; i < count; i++) {
      const id = BigInt(this.h.nodes.size + 1);
      this.h.addNode(id, { voters, learners }, this.optionsOf(args));
      this.out.push(`added ${id} ${describeConf({ voters, learners })}`);
    }
  }

  private stabilize(args: Args): void {
    this.h.stabilize((m, dropped) => {
      if (this.verbose) this.out.push(`${dropped ? "drop" : "deliver"} ${describeMessage(m)}`);
    });
    if (args.positional.length > 0) for (const v of args.positional) this.status(BigInt(v));
  }

  private deliverMsgs(args: Args): void {
    const dropIds = idList(args.named.get("drop"));
    if (dropIds.length > 0) {
      for (const m of this.h.drop(new Set(dropIds))) this.out.push(`drop ${describeMessage(m)}`);
    }
    const to = args.positional.length > 0 ? new Set(args.positional.map((v) => BigInt(v))) : undefined;
    if (dropIds.length > 0 && to === undefined) return;
    this.h.deliver(to, (m, dropped) =>
      this.out.push(`${dropped ? "drop" : "deliver"} ${describeMessage(m)}`),
    );
  }

  /**
   * Ticks until the member's election timer fires once: a follower or candidate until it resets
   * its timer by campaigning (the randomized timeout is below 2 * electionTicks), a leader for one
   * full election timeout (one check-quorum round).
   */
  private tickElection(id: NodeId): void {
    const core = this.h.node(id).core;
    const ticks = core.config.electionTicks;
    if (core.role === StateRole.Leader) {
      this.tickTimes(id, ticks);
      return;
    }
    for (let i = 0; i < 2 * ticks; i++) {
      core.tick();
      if (core.electionElapsed === 0) return;
    }
  }

  private tickTimes(id: NodeId, n: number): void {
    for (let i = 0; i < n; i++) this.h.node(id).core.tick();
  }

  private compact(id: NodeId, index: bigint): void {
    const n = this.h.node(id);
    n.storage.createSnapshot(index, n.confState, new TextEncoder().encode(`snap@${index}`));
    n.storage.compact(index);
    this.out.push(`${id} compacted to ${index}, first index ${n.storage.firstIndex()}`);
  }

  private isolate(id: NodeId): void {
    for (const other of this.h.nodes.keys()) if (other !== id) this.h.cut.add(`${id}-${other}`);
  }

  private status(id: NodeId): void {
    const st = this.h.node(id).core.status();
    const hs = st.hardState;
    this.out.push(
      `${id}: ${ROLE_NAMES[st.softState.role]} term=${hs.term} lead=${st.softState.lead} commit=${hs.commit} applied=${st.applied} ${describeConf(st.confState)}${st.leadTransferee === 0n ? "" : ` transferee=${st.leadTransferee}`}`,
    );
    for (const [pid, pr] of [...st.progress].sort((a, b) => compareIds(a[0], b[0]))) {
      this.out.push(
        `  ${pid}: ${pr.state} match=${pr.match} next=${pr.next}${pr.isLearner ? " learner" : ""}${pr.recentActive ? "" : " inactive"}`,
      );
    }
  }

  private raftState(): void {
    for (const id of [...this.h.nodes.keys()].sort(compareIds)) {
      const st = this.h.node(id).core.status();
      this.out.push(
        `${id}: ${ROLE_NAMES[st.softState.role]} term=${st.hardState.term} lead=${st.softState.lead}`,
      );
    }
  }

  private raftLog(id: NodeId): void {
    const s = this.h.node(id).storage;
    const lo = s.firstIndex();
    const hi = s.lastIndex();
    if (hi < lo) {
      this.out.push(`log is empty (first index ${lo})`);
      return;
    }
    for (const e of s.entries(lo, hi + 1n, Number.MAX_SAFE_INTEGER)) this.out.push(describeEntry(e));
  }
}

/** `v4` adds voter 4, `l4` learner 4, `r4` removes 4, `u4` updates 4. */
function parseConfChange(spec: string): ConfChange {
  const kind = spec[0];
  const nodeId = BigInt(spec.slice(1));
  const type =
    kind === "v"
      ? ConfChangeType.AddNode
      : kind === "l"
        ? ConfChangeType.AddLearnerNode
        : kind === "r"
          ? ConfChangeType.RemoveNode
          : ConfChangeType.UpdateNode;
  return { type, nodeId, context: new Uint8Array() };
}
