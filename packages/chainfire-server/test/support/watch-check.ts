// A check of what watchers saw against the cluster's list of changes (support/linearizability.ts's
// Change list, read back with a watch from revision 1). A watcher here is a client that watches a
// prefix with prev_kv, and whenever its stream ends (its member killed, removed or replaced, or the
// client moving on) opens a new one, on any member, from the revision after the last event it got,
// as etcd's clients resume. Each stream is a session. The check accepts the sessions when:
// 1. each session's events are exactly the changes from its start revision on, in order, up to
//    where it ended: none missing, repeated, invented or out of order;
// 2. each event's key-value is the state the change made (create revision, version; a deletion's
//    is empty), and its prev_kv is the key as it stood just before (absent for a new key);
// 3. the events of one revision come in one response, and a response's header revision is not
//    below its events';
// 4. each watcher's next start revision is the one after the last event it got, and, when
//    `catchUpTo` is given, its last session reached that revision (a watch that stalls fails);
//    with `watchers`, every watcher from 0 on must have sessions.
// With `compactions` (the compaction requests the servers did not refuse), a session may end
// cancelled with a compact revision, as etcd cancels a watch whose next revision has been compacted:
// the revision must be one a compaction had asked for before the cancellation came, above the watch's
// next one; the watcher's next session must start there. An event's prev_kv may then be missing where etcd leaves it out: when a compaction at or
// above the event's revision was asked for before the response arrived (the key's earlier version is
// gone by the time the server looks it up).
// These are the guarantees etcd documents for watches (ordered, unique, reliable, atomic,
// resumable), checked against the changes the members agree on.
import { type Change, problemList } from "./linearizability.js";

/** A key-value as a watch event carries it. */
export interface WatchedKv {
  readonly key: string;
  readonly value: string;
  readonly modRevision: bigint;
  readonly createRevision: bigint;
  readonly version: bigint;
}

export interface WatchedEvent {
  readonly type: "put" | "delete";
  readonly kv: WatchedKv;
  /** prev_kv; null when the event carried none. */
  readonly prev: WatchedKv | null;
}

/** One stream of one watcher, from its create request to its end. */
export interface WatchSession {
  readonly watcher: number;
  /** The member it was opened on, for failure text. */
  readonly member: string;
  readonly startRevision: bigint;
  /** Each response's header revision and events, in the order received. */
  readonly responses: readonly {
    readonly headerRevision: bigint;
    readonly events: readonly WatchedEvent[];
    /** When it arrived (performance.now()), for `compactions`. */
    readonly receivedAt?: number;
  }[];
  /** Why it ended ("still open" for the last one). */
  readonly end: string;
  /** The compact revision a cancellation gave, when the server cancelled the watch as compacted. */
  readonly compactRevision?: bigint;
  /** When that cancellation arrived (performance.now()). */
  readonly cancelledAt?: number;
}

/** A compaction request: its revision, and when it was sent (performance.now()). */
export interface CompactionAsked {
  readonly revision: bigint;
  readonly invokedAt: number;
}

/** A key-value as failure text ("none": absent; "nothing": no event there). */
export const showKv = (kv: WatchedKv | null | undefined) =>
  kv === undefined
    ? "nothing"
    : kv === null
      ? "none"
      : `${kv.key}=${JSON.stringify(kv.value)} (mod ${kv.modRevision}, create ${kv.createRevision}, version ${kv.version})`;

/** Whether two key-values agree in every field (both null: both absent). */
export const sameKv = (a: WatchedKv | null, b: WatchedKv | null) =>
  a === b ||
  (a !== null &&
    b !== null &&
    a.key === b.key &&
    a.value === b.value &&
    a.modRevision === b.modRevision &&
    a.createRevision === b.createRevision &&
    a.version === b.version);

/** A key-value for hand-written sessions and records in the checks' unit tests. */
export const kvOf = (
  key: string,
  value: string,
  mod: number,
  create: number,
  version: number,
): WatchedKv => ({
  key,
  value,
  modRevision: BigInt(mod),
  createRevision: BigInt(create),
  version: BigInt(version),
});

/** What `checkWatches` found wrong, as sentences naming the session and revision; empty when right. */
export function checkWatches(
  sessions: readonly WatchSession[],
  changes: readonly Change[],
  options: { catchUpTo?: bigint; watchers?: number; compactions?: readonly CompactionAsked[] } = {},
): string[] {
  const { say, found } = problemList();
  const compactions = options.compactions ?? [];
  /** Whether etcd may have left out the prev_kv of an event at `revision` sent at `at`. */
  const prevCompacted = (revision: bigint, at: number | undefined) =>
    compactions.some((c) => c.revision >= revision && (at === undefined || c.invokedAt < at));

  // Each change's key-value and the key's state before it, from the list alone.
  const made: WatchedKv[] = [];
  const before: (WatchedKv | null)[] = [];
  const state = new Map<string, WatchedKv>();
  for (const c of changes) {
    const prev = state.get(c.key) ?? null;
    before.push(prev);
    if (c.type === "delete") {
      made.push({ key: c.key, value: "", modRevision: c.revision, createRevision: 0n, version: 0n });
      state.delete(c.key);
    } else {
      const kv = {
        key: c.key,
        value: c.value,
        modRevision: c.revision,
        createRevision: prev?.createRevision ?? c.revision,
        version: (prev?.version ?? 0n) + 1n,
      };
      made.push(kv);
      state.set(c.key, kv);
    }
  }
  const firstAtOrAfter = (revision: bigint) => {
    let lo = 0;
    let hi = changes.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (changes[mid]!.revision < revision) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };

  const last = new Map<number, { session: WatchSession; next: bigint }>();
  for (const s of sessions) {
    const name = `watcher ${s.watcher}'s session on ${s.member} from revision ${s.startRevision} (ended: ${s.end})`;
    const before_ = last.get(s.watcher);
    if (before_ !== undefined && s.startRevision !== before_.next)
      say(`${name} started at ${s.startRevision}, not at ${before_.next}, the revision after its last event`);
    let at = firstAtOrAfter(s.startRevision);
    let next = s.startRevision;
    for (const [r, res] of s.responses.entries()) {
      for (const ev of res.events) {
        const rev = ev.kv.modRevision;
        if (rev > res.headerRevision)
          say(
            `${name}: an event at revision ${rev} came in a response whose header says ${res.headerRevision}`,
          );
        let want = changes[at];
        if (want === undefined || rev !== want.revision || ev.kv.key !== want.key) {
          const what =
            want === undefined
              ? "no change is there"
              : rev > want.revision
                ? `the change at ${want.revision} (${want.type} ${want.key}) is missing`
                : rev < next
                  ? "it is a repeat or out of order"
                  : `the change there is ${want.type} ${want.key} at ${want.revision}`;
          say(`${name}: got ${ev.type} ${ev.kv.key} at revision ${rev}, but ${what}`);
          // After a gap the session goes on from the change this event is; a repeated or
          // invented event is passed over.
          let found = rev >= next ? firstAtOrAfter(rev) : changes.length;
          while (
            found < changes.length &&
            changes[found]!.revision === rev &&
            changes[found]!.key !== ev.kv.key
          )
            found++;
          if (found >= changes.length || changes[found]!.revision !== rev) continue;
          at = found;
          want = changes[at]!;
        }
        if (ev.type !== want.type || !sameKv(ev.kv, made[at]!))
          say(
            `${name}: ${ev.type} at revision ${rev} carried ${showKv(ev.kv)}; the change made ${want.type} ${showKv(made[at]!)}`,
          );
        if (!sameKv(ev.prev, before[at]!) && !(ev.prev === null && prevCompacted(rev, res.receivedAt)))
          say(
            `${name}: ${ev.type} ${ev.kv.key} at revision ${rev} carried prev_kv ${showKv(ev.prev)}; before it the key was ${showKv(before[at]!)}`,
          );
        at++;
        next = rev + 1n;
      }
      // A revision's events end with the response (a response cut inside one, with the stream
      // ending or not, would let a resumed watch skip the rest of it).
      const lastRevision = res.events.at(-1)?.kv.modRevision;
      if (lastRevision !== undefined && changes[at]?.revision === lastRevision)
        say(
          `${name}: response ${r} ended inside revision ${lastRevision}, before ${changes[at]!.key}'s event`,
        );
    }
    if (s.compactRevision !== undefined) {
      const at = s.cancelledAt;
      if (
        !compactions.some((c) => c.revision === s.compactRevision && (at === undefined || c.invokedAt < at))
      )
        say(
          `${name}: cancelled as compacted at ${s.compactRevision}, a revision no compaction had asked for`,
        );
      else if (s.compactRevision <= next)
        say(
          `${name}: cancelled as compacted at ${s.compactRevision}, but its next revision ${next} is still there`,
        );
      // A watcher resumes from the compact revision (what is before it is gone).
      next = s.compactRevision;
    }
    last.set(s.watcher, { session: s, next });
  }
  for (let w = 0; w < (options.watchers ?? 0); w++)
    if (!last.has(w)) say(`watcher ${w} has no session: no member ever took its watch`);
  if (options.catchUpTo !== undefined) {
    for (const [w, { session, next }] of last) {
      if (next <= options.catchUpTo)
        say(
          `watcher ${w} stopped short: its last session (on ${session.member}, ended: ${session.end}) ` +
            `got events up to revision ${next - 1n}, the last change is at ${options.catchUpTo}`,
        );
    }
  }
  return found();
}
