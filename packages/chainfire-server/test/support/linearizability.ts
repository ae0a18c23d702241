// A linearizability check of a history of KV operations on a few keys. What makes it cheap is the
// revision: the cluster numbers every change it makes, so the order of the writes is not searched
// for, it is read back (a watch from revision 1 lists every change with its revision). The check then
// places each operation at a point of that order:
// - a write (put, successful compare-and-swap, delete of a present key) at the revision it made;
// - a read (range, failed compare-and-swap, delete of an absent key) just after the revision its
//   answer's header names.
// It accepts a history when:
// 1. every answer agrees with the state at its point (a read returns what the last change before it
//    left; a compare-and-swap succeeded only when its compare held; an acknowledged write is in the
//    change list at the revision it was answered with);
// 2. every change in the list was asked for, once (values are unique, so a value names its write);
// 3. the points respect real time: an operation that began after another one returned sits at or
//    after it (reads may share a point).
// That is linearizability with the header revision counted as part of each answer, as an etcd
// client may rely on it (a read with the right value but an old header revision is refused), and with
// the order of the writes taken as the cluster reports it.
// An operation that failed (timeout, member killed) may or may not have taken effect: it has no
// return time. A failed put or compare-and-swap is placed only if its value is in the list. A delete
// change that no answered delete claims must be matched to a failed delete of its key that could
// have made it: one that began before anything past that revision had returned.

/** One client operation, as the client saw it. Times are the client's clock (ms). */
export interface Op {
  readonly id: number;
  /** Who ran it, for failure text: the worker and the member it was sent to. */
  readonly by: string;
  readonly kind: "put" | "get" | "cas" | "del";
  readonly key: string;
  /** put and cas: the value written, unique in the history. */
  readonly value?: string;
  /** cas: the mod revision its compare asks for (0: the key is absent). */
  readonly expectModRevision?: bigint;
  readonly invokedAt: number;
  /** The answer, or undefined when the operation failed. */
  readonly answer?: Answer;
}

export interface Answer {
  readonly returnedAt: number;
  /** The answer header's revision. */
  readonly revision: bigint;
  /** get, and cas when its compare failed: the key as read (null: absent). */
  readonly read?: KeyState | null;
  /** cas: whether the compare held. */
  readonly succeeded?: boolean;
  /** del: keys deleted. */
  readonly deleted?: number;
}

export interface KeyState {
  readonly value: string;
  readonly modRevision: bigint;
}

/** One change the cluster made, as a watch from revision 1 lists it. */
export interface Change {
  readonly revision: bigint;
  readonly key: string;
  readonly type: "put" | "delete";
  /** The value a put wrote ("" for a delete). */
  readonly value: string;
}

/** Collects problems: the first 20 in full, then a count of the rest. */
export function problemList(): { say: (text: string) => void; found: () => string[] } {
  const problems: string[] = [];
  let untold = 0;
  return {
    say: (text) => {
      if (problems.length < 20) problems.push(text);
      else untold++;
    },
    found: () => (untold > 0 ? [...problems, `and ${untold} more`] : problems),
  };
}

/** What `check` found wrong, as sentences naming the operations and revisions; empty when linearizable. */
export function check(
  ops: readonly Op[],
  changes: readonly Change[],
  options: { everyRevisionFrom?: bigint } = {},
): string[] {
  const { say, found } = problemList();

  // The change list itself: revisions rise, one change each; with `everyRevisionFrom`, with no gap
  // (when nothing else writes, a missing revision is a change the list lost).
  for (let i = 1; i < changes.length; i++) {
    if (changes[i]!.revision <= changes[i - 1]!.revision)
      say(`the change list is out of order at revision ${changes[i]!.revision}`);
  }
  if (options.everyRevisionFrom !== undefined) {
    const gap = changes.findIndex((c, i) => c.revision !== options.everyRevisionFrom! + BigInt(i));
    if (gap >= 0)
      say(
        `the change list skips from revision ${options.everyRevisionFrom + BigInt(gap)} to ${changes[gap]!.revision}`,
      );
  }
  const stateAt = keyStates(changes);
  /**
   * The change to `key` at `revision`, if any. The list must be in revision order (reported above
   * when it is not; the checks below then may name more).
   */
  const changeAt = (key: string, revision: bigint): Change | undefined => {
    for (let i = leading(changes, (c) => c.revision < revision); changes[i]?.revision === revision; i++)
      if (changes[i]!.key === key) return changes[i];
    return undefined;
  };
  const lastRevision = changes.at(-1)?.revision ?? 0n;

  const writes = new Map<string, Op>();
  for (const op of ops) {
    if (op.value === undefined) continue;
    if (writes.has(op.value)) throw new Error(`the test wrote "${op.value}" twice`);
    writes.set(op.value, op);
  }
  const putChanges = new Map<string, Change>();
  for (const c of changes) {
    if (c.type !== "put") continue;
    if (putChanges.has(c.value))
      say(
        `"${c.value}" was written twice: at revisions ${putChanges.get(c.value)!.revision} and ${c.revision}`,
      );
    else putChanges.set(c.value, c);
    const op = writes.get(c.value);
    if (op === undefined) say(`revision ${c.revision} put "${c.value}" on ${c.key}, which no client wrote`);
    else if (op.key !== c.key) say(`revision ${c.revision} put ${describe(op)}'s value on ${c.key}`);
  }

  const show = (s: KeyState | null | undefined) =>
    s == null ? "nothing" : `"${s.value}" (mod revision ${s.modRevision})`;
  const same = (a: KeyState | null | undefined, b: KeyState | null) =>
    (a ?? null) === null
      ? b === null
      : b !== null && a!.value === b.value && a!.modRevision === b.modRevision;

  /** Each placed operation's point in the order: a revision, or a revision and a half for a read. */
  const points = new Map<Op, number>();
  const claimedDeletes = new Set<Change>();
  const readAt = (op: Op, revision: bigint, read: KeyState | null | undefined) => {
    if (revision < 1n) say(`${describe(op)} answered with header revision ${revision}`);
    if (revision > lastRevision && revision > 1n)
      say(`${describe(op)} answered at revision ${revision}, past the last change (${lastRevision})`);
    const want = stateAt(op.key, revision);
    if (!same(read, want))
      say(`${describe(op)} read ${show(read)} at revision ${revision}, where the key held ${show(want)}`);
    points.set(op, Number(revision) + 0.5);
  };
  const casHeld = (op: Op, revision: bigint): boolean =>
    (stateAt(op.key, revision - 1n)?.modRevision ?? 0n) === op.expectModRevision;

  for (const op of ops) {
    const a = op.answer;
    switch (op.kind) {
      case "get":
        if (a !== undefined) readAt(op, a.revision, a.read);
        break;
      case "put":
      case "cas": {
        const change = putChanges.get(op.value!);
        if (a !== undefined && (op.kind === "put" || a.succeeded)) {
          if (change === undefined) {
            say(`${describe(op)} was acknowledged at revision ${a.revision} but is not in the change list`);
            break;
          }
          if (change.revision !== a.revision)
            say(
              `${describe(op)} was acknowledged at revision ${a.revision} but made revision ${change.revision}`,
            );
        } else if (a !== undefined) {
          // A compare-and-swap answered "failed": its compare did not hold, and its else branch read.
          if (change !== undefined)
            say(`${describe(op)} answered failed, but its value is at revision ${change.revision}`);
          if ((stateAt(op.key, a.revision)?.modRevision ?? 0n) === op.expectModRevision)
            say(`${describe(op)} answered failed at revision ${a.revision}, where its compare held`);
          readAt(op, a.revision, a.read);
          break;
        }
        if (change === undefined) break; // failed, and never took effect
        if (op.kind === "cas" && !casHeld(op, change.revision))
          say(`${describe(op)} wrote at revision ${change.revision}, where its compare did not hold`);
        points.set(op, Number(change.revision));
        break;
      }
      case "del": {
        if (a === undefined) break; // may have taken effect: counted against unclaimed deletes below
        if (a.deleted === 0) {
          readAt(op, a.revision, null);
          break;
        }
        const change = changeAt(op.key, a.revision);
        if (change?.type !== "delete") {
          say(`${describe(op)} deleted at revision ${a.revision}, which is not a delete of ${op.key}`);
          break;
        }
        if (claimedDeletes.has(change))
          say(`${describe(op)} claims the delete at revision ${a.revision}, as another did`);
        claimedDeletes.add(change);
        if (stateAt(op.key, a.revision - 1n) === null)
          say(`${describe(op)} deleted at revision ${a.revision} a key that was absent`);
        points.set(op, Number(a.revision));
        break;
      }
    }
  }
  // The answered operations by return time, each with the latest point returned by then (and whose):
  // what an operation that began at a given time must not sit before.
  const byReturn = [...points.keys()]
    .filter((op) => op.answer !== undefined)
    .sort((x, y) => x.answer!.returnedAt - y.answer!.returnedAt);
  const latestSoFar: { point: number; op: Op }[] = [];
  for (const op of byReturn) {
    const point = points.get(op)!;
    const prev = latestSoFar.at(-1);
    latestSoFar.push(prev !== undefined && prev.point >= point ? prev : { point, op });
  }
  const latestBefore = (t: number) => latestSoFar[leading(byReturn, (op) => op.answer!.returnedAt < t) - 1];

  // A delete change no answered delete claims needs a failed delete of its key that could have made
  // it: one whose floor (the latest point among the operations that returned before it began) is
  // below the change's revision. Whoever qualifies for a revision qualifies for every later one, so
  // matching the changes in rising order, each to any unused candidate, finds a match when one exists.
  const failedDeletes = new Map<string, { op: Op; floor: number }[]>();
  for (const op of ops) {
    if (op.kind !== "del" || op.answer !== undefined) continue;
    const candidate = { op, floor: latestBefore(op.invokedAt)?.point ?? 0 };
    const list = failedDeletes.get(op.key);
    if (list === undefined) failedDeletes.set(op.key, [candidate]);
    else list.push(candidate);
  }
  for (const list of failedDeletes.values()) list.sort((x, y) => x.floor - y.floor);
  const used = new Map<string, number>();
  for (const c of changes) {
    if (c.type !== "delete" || claimedDeletes.has(c)) continue;
    const next = used.get(c.key) ?? 0;
    const candidate = failedDeletes.get(c.key)?.[next];
    if (candidate === undefined || candidate.floor >= Number(c.revision)) {
      say(`revision ${c.revision} deleted ${c.key}, which no client asked for by then`);
      continue;
    }
    used.set(c.key, next + 1);
    points.set(candidate.op, Number(c.revision));
  }

  // Real time: no placed operation sits before one that returned before it began.
  for (const op of [...points.keys()].sort((x, y) => x.invokedAt - y.invokedAt)) {
    const latest = latestBefore(op.invokedAt);
    if (latest !== undefined && latest.point > points.get(op)!)
      say(
        `${describe(op)} began after ${describe(latest.op)} returned, but sits before it ` +
          `(${pointText(points.get(op)!)} < ${pointText(latest.point)})`,
      );
  }
  return found();
}

/** A lookup of a key's state once every change up to a revision is made (null: absent). */
function keyStates(changes: readonly Change[]): (key: string, revision: bigint) => KeyState | null {
  const byKey = new Map<string, Change[]>();
  for (const c of changes) {
    const list = byKey.get(c.key);
    if (list === undefined) byKey.set(c.key, [c]);
    else list.push(c);
  }
  return (key, revision) => {
    const list = byKey.get(key) ?? [];
    const last = list[leading(list, (c) => c.revision <= revision) - 1];
    return last === undefined || last.type === "delete"
      ? null
      : { value: last.value, modRevision: last.revision };
  };
}

/** A serializable get: served from the state of the member asked, which may be behind. */
export interface SerializableRead {
  /** The worker and member, for failure text. */
  readonly by: string;
  /** The member's process: its state only moves forward while the process lives. */
  readonly member: string;
  readonly pid: number;
  readonly key: string;
  readonly invokedAt: number;
  readonly returnedAt: number;
  /** The answer header's revision, and the key as read (null: absent). */
  readonly revision: bigint;
  readonly read: KeyState | null;
}

/**
 * Serializable gets against the change list: each reads the key as it stood at its header
 * revision, which no change list passed; and on one member process, a get begun after another
 * returned is not answered from an older revision (a member's state moves only forward: a member
 * restarted may be behind what it served before its crash, not one that lives on).
 */
export function checkSerializableReads(
  reads: readonly SerializableRead[],
  changes: readonly Change[],
): string[] {
  const { say, found } = problemList();
  const stateAt = keyStates(changes);
  const lastRevision = changes.at(-1)?.revision ?? 1n;
  const show = (s: KeyState | null) =>
    s === null ? "nothing" : `"${s.value}" (mod revision ${s.modRevision})`;
  const describeRead = (r: SerializableRead) =>
    `serializable get ${r.key} (${r.by}, ${r.invokedAt.toFixed(1)}–${r.returnedAt.toFixed(1)} ms)`;
  const latest = new Map<string, SerializableRead[]>();
  for (const r of reads) {
    if (r.revision > lastRevision)
      say(`${describeRead(r)} answered at revision ${r.revision}, past the last change (${lastRevision})`);
    const want = stateAt(r.key, r.revision);
    if (
      (r.read === null) !== (want === null) ||
      (r.read !== null && (r.read.value !== want!.value || r.read.modRevision !== want!.modRevision))
    )
      say(
        `${describeRead(r)} read ${show(r.read)} at revision ${r.revision}, where the key held ${show(want)}`,
      );
    const process = `${r.member}/${r.pid}`;
    const list = latest.get(process) ?? [];
    list.push(r);
    latest.set(process, list);
  }
  for (const list of latest.values()) {
    const byReturn = [...list].sort((a, b) => a.returnedAt - b.returnedAt);
    // The highest-revision answer among the first i + 1 to return.
    const newestSoFar: SerializableRead[] = [];
    for (const [i, x] of byReturn.entries()) {
      const before = newestSoFar[i - 1];
      newestSoFar.push(before !== undefined && before.revision >= x.revision ? before : x);
    }
    for (const r of list) {
      const newest = newestSoFar[leading(byReturn, (x) => x.returnedAt < r.invokedAt) - 1];
      if (newest !== undefined && newest.revision > r.revision)
        say(
          `${describeRead(r)} answered at revision ${r.revision}, after ${describeRead(newest)} on the same process had answered at ${newest.revision}`,
        );
    }
  }
  return found();
}

/** How many leading elements of `list` satisfy `holds` (true for a prefix, false after it). */
function leading<T>(list: readonly T[], holds: (x: T) => boolean): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (holds(list[mid]!)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const pointText = (p: number) => (Number.isInteger(p) ? `revision ${p}` : `a read at revision ${p - 0.5}`);

/** An operation as failure text. */
export function describe(op: Op): string {
  const what =
    op.kind === "get"
      ? `get ${op.key}`
      : op.kind === "del"
        ? `delete ${op.key}`
        : op.kind === "put"
          ? `put ${op.key}="${op.value}"`
          : `cas ${op.key}="${op.value}" if mod revision ${op.expectModRevision}`;
  const when =
    op.answer === undefined
      ? `from ${op.invokedAt.toFixed(1)} ms, failed`
      : `${op.invokedAt.toFixed(1)}–${op.answer.returnedAt.toFixed(1)} ms`;
  return `op ${op.id} (${what}, ${op.by}, ${when})`;
}
