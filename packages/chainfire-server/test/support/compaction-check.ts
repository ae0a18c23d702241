// The checks of the compaction fault test (compaction-faults.test.ts) on what its clients recorded:
// puts with their answers, compaction requests, reads at past revisions, and the list of changes one
// watcher recorded (no compaction ever passes it). Each check names what is wrong in a sentence.
// The rules are etcd's (mvcc/kvstore_txn.go, mvcc/kvstore.go): a read at revision r is refused as
// compacted when r is below the compact revision, as a future revision when r is above the current
// one; a compaction at or below the compact revision is refused as compacted.
import { type Change, problemList } from "./linearizability.js";
import { sameKv, showKv, type WatchedKv, type WatchSession } from "./watch-check.js";

export { sameKv, showKv };

export interface PutRecord {
  readonly key: string;
  readonly value: string;
  /** The member it was sent to. */
  readonly by: string;
  readonly invokedAt: number;
  /** With an answer: when it came, the revision it made and the key's version before it. */
  readonly answer?: {
    readonly returnedAt: number;
    readonly revision: bigint;
    readonly prev: WatchedKv | null;
  };
}

/** How a request ended: answered, refused as compacted or future, or unknown (no answer in time). */
export type Outcome = "ok" | "compacted" | "future" | "unknown";

export interface CompactRecord {
  readonly revision: bigint;
  readonly physical: boolean;
  /** The member it was sent to. */
  readonly by: string;
  readonly invokedAt: number;
  readonly returnedAt: number;
  readonly outcome: Outcome;
}

export interface ReadRecord {
  readonly by: string;
  readonly key: string;
  readonly revision: bigint;
  readonly serializable: boolean;
  readonly invokedAt: number;
  readonly returnedAt: number;
  /** The key as read (null: absent) and the header's revision; or the refusal. */
  readonly outcome:
    | { readonly kv: WatchedKv | null; readonly headerRevision: bigint }
    | "compacted"
    | "future";
}

/** The highest of some revisions, or `floor` when there are none above it. */
export function highest(revisions: readonly bigint[], floor: bigint): bigint {
  // biome-ignore lint/complexity/useMathMinMax: Math.max does not accept bigint.
  return revisions.reduce((m, r) => (r > m ? r : m), floor);
}

/** The recorder's events in order, as a list of changes. */
export function recordedChanges(sessions: readonly WatchSession[]): Change[] {
  return sessions.flatMap((s) =>
    s.responses.flatMap((r) =>
      r.events.map((e) => ({ revision: e.kv.modRevision, key: e.kv.key, type: e.type, value: e.kv.value })),
    ),
  );
}

/** Each key's versions as the changes made them, to look up the key at any revision. */
export class KeyHistory {
  private readonly versions = new Map<string, WatchedKv[]>();

  constructor(changes: readonly Change[]) {
    for (const c of changes) {
      const list = this.versions.get(c.key) ?? [];
      const prev = list.at(-1);
      list.push({
        key: c.key,
        value: c.value,
        modRevision: c.revision,
        createRevision: prev?.createRevision ?? c.revision,
        version: (prev?.version ?? 0n) + 1n,
      });
      this.versions.set(c.key, list);
    }
  }

  /** The key as it stood at `revision` (null: not yet written). Only puts are made here. */
  at(key: string, revision: bigint): WatchedKv | null {
    const list = this.versions.get(key) ?? [];
    let found: WatchedKv | null = null;
    for (const v of list) if (v.modRevision <= revision) found = v;
    return found;
  }

  keys(): string[] {
    return [...this.versions.keys()].sort();
  }
}

/**
 * The recorded changes against the puts: one put per revision from 2 on (only the writers write),
 * each of a value a writer sent and only once, and every acknowledged put at its revision with the
 * key's previous version as its prev_kv.
 */
export function checkChanges(changes: readonly Change[], puts: readonly PutRecord[]): string[] {
  const { say, found } = problemList();
  const sent = new Map(puts.map((p) => [p.value, p]));
  const seen = new Set<string>();
  for (const [i, c] of changes.entries()) {
    const want = BigInt(i) + 2n;
    if (c.revision !== want) {
      say(
        `change ${i} is at revision ${c.revision}, where revision ${want} was next: revisions are missing or repeated`,
      );
      break;
    }
    if (c.type !== "put" || sent.get(c.value)?.key !== c.key)
      say(`revision ${c.revision} is ${c.type} ${c.key}=${JSON.stringify(c.value)}, which no writer sent`);
    if (seen.has(c.value)) say(`revision ${c.revision} writes ${JSON.stringify(c.value)} a second time`);
    seen.add(c.value);
  }
  const history = new KeyHistory(changes);
  const byRevision = new Map(changes.map((c) => [c.revision, c]));
  for (const p of puts) {
    if (p.answer === undefined) continue;
    const c = byRevision.get(p.answer.revision);
    const put = `the put of ${p.key}=${JSON.stringify(p.value)} acknowledged at revision ${p.answer.revision}`;
    if (c === undefined || c.key !== p.key || c.value !== p.value) {
      say(
        `${put} is not among the changes (${c === undefined ? "none there" : `${c.key}=${JSON.stringify(c.value)} is`})`,
      );
      continue;
    }
    const before = history.at(p.key, p.answer.revision - 1n);
    if (!sameKv(p.answer.prev, before))
      say(`${put} gave prev_kv ${showKv(p.answer.prev)}; before it the key was ${showKv(before)}`);
  }
  return found();
}

/**
 * Compaction requests against each other: one refused as compacted needs a compaction at or above
 * it asked for (and not refused) before its answer; one acknowledged must not follow the
 * acknowledgement of one at or above it; none is refused as a future revision (each asks for a
 * revision the changes had reached).
 */
export function checkCompactions(compactions: readonly CompactRecord[]): string[] {
  const { say, found } = problemList();
  const asked = compactions.filter((c) => c.outcome === "ok" || c.outcome === "unknown");
  for (const c of compactions) {
    const what = `the compaction at ${c.revision} (sent at ${Math.round(c.invokedAt)} ms)`;
    if (c.outcome === "future") say(`${what} was refused as a future revision`);
    if (
      c.outcome === "compacted" &&
      !asked.some((o) => o.revision >= c.revision && o.invokedAt < c.returnedAt)
    )
      say(`${what} was refused as compacted, and no compaction at or above it had been asked for`);
    if (c.outcome === "ok") {
      const earlier = compactions.find(
        (o) => o.outcome === "ok" && o.revision >= c.revision && o.returnedAt < c.invokedAt,
      );
      if (earlier !== undefined)
        say(
          `${what} was acknowledged after the one at ${earlier.revision} had been: it should have been refused`,
        );
    }
  }
  return found();
}

/**
 * The acknowledged compaction above a read's revision that obliges the read to be refused, if any:
 * one acknowledged before the read was sent, by any member for a linearizable read (the serving
 * member confirms with the leader first), by the member serving it for a serializable one (a member
 * acknowledges a compaction once it has applied it).
 */
export function refusingCompaction(
  r: ReadRecord,
  compactions: readonly CompactRecord[],
): CompactRecord | undefined {
  return compactions.find(
    (c) =>
      c.outcome === "ok" &&
      c.revision > r.revision &&
      c.returnedAt < r.invokedAt &&
      (!r.serializable || c.by === r.by),
  );
}

/**
 * Reads at past revisions: an answer is the key as it stood at the revision, under a header at or
 * above it; a refusal as compacted needs a compaction above the revision asked for before the
 * refusal, and a read must be refused where `refusingCompaction` finds one; a read is not refused
 * as future for a revision a put had been acknowledged at before it was sent (by any member for a
 * linearizable read, by the member serving it for a serializable one).
 */
export function checkReads(
  reads: readonly ReadRecord[],
  changes: readonly Change[],
  compactions: readonly CompactRecord[],
  puts: readonly PutRecord[],
): string[] {
  const { say, found } = problemList();
  const history = new KeyHistory(changes);
  const asked = compactions.filter((c) => c.outcome === "ok" || c.outcome === "unknown");
  const acked = puts.flatMap((p) => (p.answer === undefined ? [] : [{ ...p.answer, by: p.by }]));
  for (const r of reads) {
    const what = `${r.serializable ? "a serializable" : "a linearizable"} read of ${r.key} at revision ${r.revision} by ${r.by} (sent at ${Math.round(r.invokedAt)} ms)`;
    const sameMember = r.serializable ? " by the same member" : "";
    if (r.outcome === "compacted") {
      if (!asked.some((c) => c.revision > r.revision && c.invokedAt < r.returnedAt))
        say(`${what} was refused as compacted, and no compaction above ${r.revision} had been asked for`);
      continue;
    }
    if (r.outcome === "future") {
      const reached = acked.find(
        (a) => a.revision >= r.revision && a.returnedAt < r.invokedAt && (!r.serializable || a.by === r.by),
      );
      if (reached !== undefined)
        say(
          `${what} was refused as a future revision, though a put had been acknowledged at ${reached.revision}${sameMember}`,
        );
      continue;
    }
    const mustRefuse = refusingCompaction(r, compactions);
    if (mustRefuse !== undefined)
      say(
        `${what} was answered, though the compaction at ${mustRefuse.revision} had been acknowledged before it${sameMember}`,
      );
    if (r.outcome.headerRevision < r.revision)
      say(`${what} was answered under header revision ${r.outcome.headerRevision}`);
    const want = history.at(r.key, r.revision);
    if (!sameKv(r.outcome.kv, want))
      say(`${what} gave ${showKv(r.outcome.kv)}; at ${r.revision} it was ${showKv(want)}`);
  }
  return found();
}
