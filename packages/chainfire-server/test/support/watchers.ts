// Watchers for the fault tests: clients that follow a key prefix with prev_kv through a whole run,
// resuming whenever a stream ends, as etcd's clients do. Every stream is kept as a session for the
// check (watch-check.ts).
import type { ChainfireClients, etcd, mvccpb } from "@photoncloud/chainfire-api";
import { SeededRandom } from "@photoncloud/raft";
import { prefixEnd } from "../../src/mvcc/key-range.js";
import { rangeRequest, watchCreateRequest } from "../../src/mvcc/messages.js";
import { call } from "./daemon-cluster.js";
import type { WatchedEvent, WatchedKv, WatchSession } from "./watch-check.js";

/** The cluster the watchers use: its members (process null while down) and a client for each. */
export interface WatchedCluster {
  readonly cluster: { readonly members: readonly { readonly name: string; readonly process: unknown }[] };
  readonly clients: readonly ChainfireClients[];
  /** Set when the test stops: the watchers stop opening streams. */
  readonly stopped: boolean;
}

export type OpenSession = WatchSession & {
  responses: { headerRevision: bigint; events: WatchedEvent[]; receivedAt: number }[];
  end: string;
  compactRevision?: bigint;
  cancelledAt?: number;
};

export interface WatchersOptions {
  /** How many watchers; the first `pinned` stay each on one member, the others move. */
  readonly count: number;
  readonly pinned: number;
  /** The prefix watched. */
  readonly prefix: string;
  /** Draws each moving watcher's members and how long it stays. */
  readonly seed: number;
  /** Where the sessions go. */
  readonly sessions: WatchSession[];
}

const enc = (s: string) => Buffer.from(s);
/** A watcher's breath before it tries a member again (one down, or one that refused the watch). */
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export const watchedKv = (kv: mvccpb.KeyValue): WatchedKv => ({
  key: kv.key.toString(),
  value: kv.value.toString(),
  modRevision: kv.modRevision,
  createRevision: kv.createRevision,
  version: kv.version,
});

/**
 * Watchers of a prefix (with prev_kv) during a whole run, from revision 1. The pinned ones stay
 * each on one member: when its stream ends (the member killed, or removed and replaced) they open a
 * new one there once it runs again, from the revision after the last event they got, so every
 * fault happens under a watch. The others move on to a member of their drawing whenever a stream
 * ends, and after 0.5–3 s on most members. Any watcher opens a new stream after hearing nothing for
 * 3 s (a member frozen, or cut off). A stream cancelled as compacted is resumed from the compact
 * revision, as an etcd client's user does.
 */
export class Watchers {
  private readonly next: bigint[];
  private readonly open = new Set<() => void>();
  private stopping = false;
  private readonly runs: Promise<void>[];
  private readonly rangeEnd: Buffer;

  constructor(
    private readonly s: WatchedCluster,
    private readonly options: WatchersOptions,
  ) {
    this.next = Array.from({ length: options.count }, () => 1n);
    this.rangeEnd = prefixEnd(enc(options.prefix));
    this.runs = this.next.map((_, w) =>
      this.run(w, new SeededRandom(BigInt(options.seed) * 1000n + 500n + BigInt(w))),
    );
  }

  /** Whether every watcher has had the events up to `revision`. */
  reached(revision: bigint): boolean {
    return this.next.every((n) => n > revision);
  }

  /** The revision watcher `w` waits for: it has had every event below it. */
  nextRevision(w: number): bigint {
    return this.next[w]!;
  }

  /** Ends every stream and waits for the watchers to stop. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const cancel of [...this.open]) cancel();
    await Promise.all(this.runs);
  }

  private async run(w: number, rnd: SeededRandom): Promise<void> {
    const members = this.s.cluster.members.length;
    const pinned = w < this.options.pinned;
    while (!this.stopping && !this.s.stopped) {
      const i = pinned ? w % members : rnd.intBelow(members);
      const m = this.s.cluster.members[i]!;
      if (m.process === null) {
        await pause(50); // killed or being replaced: try again after a breath
        continue;
      }
      const session: OpenSession = {
        watcher: w,
        member: m.name,
        startRevision: this.next[w]!,
        responses: [],
        end: "still open",
      };
      const moveOnMs = pinned ? undefined : 500 + rnd.intBelow(2500);
      // Kept once the member has taken the watch or sent events (a stream refused at once saw nothing).
      if (await this.session(w, this.s.clients[i]!, session, moveOnMs)) this.options.sessions.push(session);
      else await pause(50);
    }
  }

  /**
   * Runs one stream to its end; whether the member took the watch or sent events. After 3 s
   * without a word it asks the member its revision: one behind the watch (frozen, cut off, or
   * catching up) is left; one that already holds changes the watch has not delivered has 5 s
   * more to send something, or the session ends as stalled.
   */
  private session(w: number, c: ChainfireClients, session: OpenSession, moveOnMs?: number): Promise<boolean> {
    return new Promise((resolve) => {
      const stream = c.watch.watch();
      let done = false;
      let created = false;
      let silentSince = Date.now();
      let asking = false;
      let heldSince: number | undefined;
      let held = 0n;
      const finish = (why: string) => {
        if (done) return;
        done = true;
        session.end = why;
        clearInterval(timer);
        this.open.delete(stopped);
        stream.cancel();
        resolve(created || session.responses.length > 0 || session.compactRevision !== undefined);
      };
      const stopped = () => finish("stopped by the test");
      this.open.add(stopped);
      const started = Date.now();
      const timer = setInterval(() => {
        if (moveOnMs !== undefined && Date.now() - started > moveOnMs) finish("moved on");
        else if (heldSince !== undefined && Date.now() - heldSince > 5000)
          finish(`stalled: the member held revision ${held}, the watch waited for ${this.next[w]}`);
        else if (heldSince === undefined && !asking && Date.now() - silentSince > 3000) {
          asking = true;
          this.serializableRevision(c).then((revision) => {
            asking = false;
            if (revision !== undefined && revision >= this.next[w]!) {
              heldSince = Date.now();
              held = revision;
            } else finish("moved on from a silent member");
          });
        }
      }, 100);
      stream.on("error", (err: Error) => finish(`error: ${err.message}`));
      stream.on("end", () => finish("the member ended the stream"));
      stream.on("data", (res: etcd.WatchResponse) => {
        if (done) return;
        silentSince = Date.now();
        heldSince = undefined;
        if (res.created) created = true;
        if (res.events.length > 0) {
          session.responses.push({
            headerRevision: res.header!.revision,
            events: res.events.map((ev) => ({
              type: ev.type === 0 ? "put" : "delete",
              kv: watchedKv(ev.kv!),
              prev: ev.prevKv === undefined ? null : watchedKv(ev.prevKv),
            })),
            receivedAt: performance.now(),
          });
          this.next[w] = res.events.at(-1)!.kv!.modRevision + 1n;
        }
        if (res.canceled && res.compactRevision !== 0n) {
          session.compactRevision = res.compactRevision;
          session.cancelledAt = performance.now();
          this.next[w] = res.compactRevision;
          finish(`cancelled: compacted at ${res.compactRevision}`);
        } else if (res.canceled) finish(`cancelled: ${res.cancelReason}`);
      });
      stream.write({
        createRequest: watchCreateRequest({
          key: enc(this.options.prefix),
          rangeEnd: this.rangeEnd,
          startRevision: session.startRevision,
          prevKv: true,
        }),
      });
    });
  }

  /** The revision a member has applied, as it says itself (undefined when it does not answer in 2 s). */
  private serializableRevision(c: ChainfireClients): Promise<bigint | undefined> {
    const req = rangeRequest({
      key: enc(this.options.prefix),
      rangeEnd: this.rangeEnd,
      countOnly: true,
      serializable: true,
    });
    return call<etcd.RangeResponse>(c.kv, "range", req, 2000).then(
      (res) => res.header!.revision,
      () => undefined,
    );
  }
}
