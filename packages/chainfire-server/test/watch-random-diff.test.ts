// Randomised differential test of the Watch stream: seeded sequences of watch creations (any key or
// range, start revisions old, current, compacted or to come, filters, prev_kv, fragment, watch IDs
// left to the server or given, duplicates included), cancellations (of live, finished and unknown
// IDs), progress requests, writes and compactions, on two streams to a 1-member etcd 3.4 and two to
// chainfire members. Values of up to 200 KB make responses large enough to fragment.
//
// What is compared, per stream: every answer to a create, cancel or progress request (IDs, flags,
// reasons, compact revisions and header revisions), in order; and for each watch, the events it
// delivered (fragments joined) and whether it was canceled by a compaction. What is not: how events
// are grouped into responses (batching is each server's own), and the header of a response carrying
// events. Every fragment must be smaller than the limit, as etcd cuts them.
//
// To compare at fixed points, the test settles before each cancellation, compaction and the end of a
// seed: a reference watch on etcd over every key says what each watch must have delivered by then,
// and both servers' watches are awaited until they have. etcd 3.4 answers a cancel and a progress
// request in the order they came, so a progress request after a cancel shows whether the cancel was
// answered. A compaction never passes the start of a watch still running, since etcd cancels a watch
// it has not yet caught up (which timing decides) and chainfire catches up at once.
//
// WATCH_DIFF_SEEDS (e.g. "1-200") and WATCH_DIFF_STEPS (steps per seed) widen the search. A failure
// names the seed and the step.
import type { ServiceError } from "@grpc/grpc-js";
import { type ChainfireClients, etcd, mvccpb } from "@photoncloud/chainfire-api";
import { SeededRandom } from "@photoncloud/raft";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { prefixEnd } from "../src/mvcc/key-range.js";
import { deleteRangeRequest, putRequest, watchCreateRequest } from "../src/mvcc/messages.js";
import { call, GiveUp, until } from "./support/daemon-cluster.js";
import {
  caughtUp,
  countFromEnv,
  type EventSelector,
  refusedOnPurpose,
  type Sides,
  seedsFromEnv,
  selectEvents,
  show,
  startSides,
  type WatchedEvent,
  watchedEvent,
} from "./support/random-diff.js";

const SEEDS = seedsFromEnv("WATCH_DIFF_SEEDS", "1-6");
const STEPS = countFromEnv("WATCH_DIFF_STEPS", 120);
const MAX_REQUEST_BYTES = 256 * 1024;
/** etcd cuts a fragmented watch's response past the request limit and its 512 KiB gRPC allowance. */
const FRAGMENT_BYTES = MAX_REQUEST_BYTES + 512 * 1024;
const STREAMS = 2;

/** Keys written and watched; the empty key is only watched (it stands for "\0"). */
const KEYS = ["a", "a/1", "a/2", "b", "c"].map((k) => Buffer.from(k));
/** Value sizes: a few of the large ones (and their previous values) in one response pass FRAGMENT_BYTES. */
const VALUE_SIZES = [0, 1, 100_000, 200_000];

/** One watch stream on one server, keeping every response in arrival order. */
class Stream {
  readonly responses: etcd.WatchResponse[] = [];
  /** Responses sent in parts (fragment flags), counted when their last part arrives. */
  fragmented = 0;
  private readonly call: ReturnType<ChainfireClients["watch"]["watch"]>;
  private failure: Error | undefined;
  /** Per watch, the fragments of a response received so far, until its last part. */
  private readonly fragments = new Map<bigint, etcd.WatchResponse[]>();
  /** The watches that asked for fragments, and whether the create awaiting its answer did. */
  private readonly fragmentWatches = new Set<bigint>();
  private creatingFragmented = false;

  /**
   * `wholeChecked`: also fail on a response to a fragmenting watch that should have been cut. Not
   * for etcd 3.4, which sends the events it held before a watch's created answer whole.
   */
  constructor(
    readonly clients: ChainfireClients,
    private readonly wholeChecked = false,
  ) {
    this.call = clients.watch.watch();
    this.call.on("data", (res: etcd.WatchResponse) => this.received(res));
    this.call.on("error", (err: Error) => {
      this.failure ??= err;
    });
  }

  private received(res: etcd.WatchResponse): void {
    this.responses.push(res);
    if (res.created) {
      // An ID given again after a cancel names a new watch, which may not ask for fragments.
      if (!res.canceled && this.creatingFragmented) this.fragmentWatches.add(res.watchId);
      else if (!res.canceled) this.fragmentWatches.delete(res.watchId);
      this.creatingFragmented = false;
    }
    const parts = this.fragments.get(res.watchId);
    if (res.fragment) {
      this.fragments.set(res.watchId, [...(parts ?? []), res]);
      return;
    }
    let problem: string | undefined;
    if (parts !== undefined) {
      this.fragments.delete(res.watchId);
      this.fragmented++;
      problem = res.canceled ? "canceled inside a fragmented response" : cutProblem([...parts, res]);
    } else if (this.wholeChecked && this.fragmentWatches.has(res.watchId) && res.events.length > 1) {
      const size = flaggedSize(res);
      if (size >= FRAGMENT_BYTES)
        problem = `a response of ${size} bytes sent whole (limit ${FRAGMENT_BYTES})`;
    }
    if (problem !== undefined) this.failure ??= new Error(`watch ${res.watchId}: ${problem}`);
  }

  /** Throws what went wrong with the stream, if anything has. */
  check(): void {
    if (this.failure !== undefined) throw new GiveUp(`watch stream failed: ${this.failure.message}`);
  }

  send(req: Partial<etcd.WatchRequest>): void {
    this.check();
    if (req.createRequest !== undefined) this.creatingFragmented = req.createRequest.fragment;
    this.call.write(req);
  }

  /** The index of the first answer to a request (not an event) at or after `from`, polled with a deadline. */
  async answer(from: number, what: string): Promise<number> {
    return until(
      () => {
        this.check();
        const i = this.responses.findIndex((r, j) => j >= from && isAnswer(r));
        return i < 0 ? undefined : i + 1;
      },
      what,
      30_000,
    ).then((i) => i - 1);
  }

  close(): void {
    this.call.cancel();
  }
}

/** A response's encoded size with its fragment flag set, as etcd measures a part. */
const flaggedSize = (r: etcd.WatchResponse) =>
  etcd.WatchResponse.encode({ ...r, fragment: true }).finish().length;

/**
 * Whether a fragmented response was cut as etcd cuts one: each part under the limit (measured with
 * its fragment flag) unless it holds a single event, and each but the last too full for the next
 * part's first event. So a response is fragmented only when it reaches the limit.
 */
function cutProblem(parts: etcd.WatchResponse[]): string | undefined {
  for (const [i, part] of parts.entries()) {
    if (part.events.length > 1 && flaggedSize(part) >= FRAGMENT_BYTES)
      return `part ${i + 1} of ${parts.length} has ${flaggedSize(part)} bytes (limit ${FRAGMENT_BYTES})`;
    const next = parts[i + 1];
    if (next === undefined) break;
    const fuller = flaggedSize({ ...part, events: [...part.events, ...next.events.slice(0, 1)] });
    if (fuller < FRAGMENT_BYTES)
      return `part ${i + 1} of ${parts.length} stops at ${flaggedSize(part)} bytes where the next event would fit (${fuller} bytes, limit ${FRAGMENT_BYTES})`;
  }
  return undefined;
}

/** An answer to a create, cancel or progress request, as opposed to events or a compaction's cancel. */
function isAnswer(r: etcd.WatchResponse): boolean {
  return (
    r.created || (r.canceled && r.compactRevision === 0n) || (r.watchId === -1n && r.events.length === 0)
  );
}

/** An answer as compared: everything but the IDs and term in its header. */
function answerFields(r: etcd.WatchResponse) {
  return {
    watchId: r.watchId,
    created: r.created,
    canceled: r.canceled,
    cancelReason: r.cancelReason,
    compactRevision: r.compactRevision,
    revision: r.header?.revision,
    events: r.events.length,
  };
}

/** One created watch as the test drew it. */
interface Drawn {
  stream: number;
  /** Which of the stream's created watches this is (the order of the created answers). */
  index: number;
  id: bigint;
  selector: EventSelector;
  /** Started below the compaction: the server must cancel it with the compact revision. */
  compacted: boolean;
  /** The compaction when it was created: a delete at that revision is no longer in the history. */
  compactedAt: bigint;
}

/** The events a watch must have delivered, out of a full history. */
function expected(d: Drawn, all: readonly WatchedEvent[]): WatchedEvent[] {
  // A compaction removes the deletes at or below its revision (etcd's tombstones) with the key.
  const gone = (e: WatchedEvent) =>
    e.type === mvccpb.Event_EventType.DELETE && e.kv.modRevision <= d.compactedAt;
  return selectEvents(d.selector, all).filter((e) => !gone(e));
}

/** The watches of `mine` that have not yet delivered what they must by the end of `all`, described. */
function lagging(stream: Stream, mine: readonly Drawn[], all: readonly WatchedEvent[]): string[] {
  const got = delivered(stream);
  const revisions = (events: readonly WatchedEvent[]) =>
    events.map((e) => `${e.type}@${e.kv.modRevision}`).join(",");
  return mine.flatMap((d) => {
    const w = got[d.index];
    if (w?.ended) return [];
    if (d.compacted && w?.compactRevision !== undefined) return [];
    const want = expected(d, all);
    if (!d.compacted && w !== undefined && w.events.length >= want.length) return [];
    const what = d.compacted
      ? "a cancellation for its compacted start"
      : `events (type@revision) ${revisions(want)}`;
    return [
      `watch ${d.id} ${show(d.selector)} has ${w === undefined ? "not been created" : revisions(w.events)}, wants ${what}`,
    ];
  });
}

/** What one server's stream has delivered for each of its created watches, read from its responses. */
interface Delivered {
  events: WatchedEvent[];
  compactRevision?: bigint;
  /** Canceled by the client's request. */
  ended: boolean;
}

/**
 * Reads a stream's responses into what each created watch delivered (by its index among the created
 * ones), fragments joined; fails on a response for no open watch, or on what the stream saw wrong.
 */
function delivered(stream: Stream): Delivered[] {
  stream.check();
  const watches: Delivered[] = [];
  const live = new Map<bigint, Delivered>();
  for (const r of stream.responses) {
    if (r.created) {
      if (r.canceled) continue;
      const w: Delivered = { events: [], ended: false };
      watches.push(w);
      live.set(r.watchId, w);
      continue;
    }
    const w = live.get(r.watchId);
    if (w === undefined) {
      // Only a progress request's answer is addressed to no open watch.
      if (r.watchId === -1n && !r.canceled && r.events.length === 0) continue;
      throw new GiveUp(`a response for watch ${r.watchId}, which is not open: ${show(r)}`);
    }
    if (w.compactRevision !== undefined && !r.canceled)
      throw new GiveUp(
        `watch ${r.watchId}: a response after its cancellation for the compaction: ${show(r)}`,
      );
    if (r.canceled) {
      if (r.compactRevision !== 0n) w.compactRevision = r.compactRevision;
      else {
        w.ended = true;
        live.delete(r.watchId);
      }
      continue;
    }
    w.events.push(...r.events.map(watchedEvent));
  }
  return watches;
}

type WriteRequest =
  | { rpc: "put"; req: etcd.PutRequest }
  | { rpc: "deleteRange"; req: etcd.DeleteRangeRequest }
  | { rpc: "txn"; req: etcd.TxnRequest }
  | { rpc: "compact"; req: etcd.CompactionRequest };

/** The outcome of a write as compared: the revision it made, or the error. */
async function write(clients: ChainfireClients, w: WriteRequest): Promise<{ revision: bigint } | string> {
  try {
    const res = await call<{ header?: etcd.ResponseHeader }>(clients.kv, w.rpc, w.req, 20_000);
    return { revision: res.header!.revision };
  } catch (err) {
    return `${(err as ServiceError).code}: ${(err as ServiceError).details}`;
  }
}

describe("randomised Watch streams: chainfire answers as etcd 3.4", () => {
  let sides: Sides | undefined;

  beforeAll(async () => {
    sides = await startSides("watch-random-diff", [`--max-request-bytes=${MAX_REQUEST_BYTES}`]);
  }, 120_000);

  afterAll(() => sides?.stop());

  it(
    `${SEEDS.length} seed(s) of ${STEPS} steps each`,
    async () => {
      const { etcd: etcdSide, chainfire: chainfireSide } = sides!;
      // Every event etcd makes, from the first write on: what each watch must deliver is read here.
      const reference = new Stream(etcdSide.clients[0]!);
      reference.send({
        createRequest: watchCreateRequest({
          key: Buffer.from([0]),
          rangeEnd: Buffer.from([0]),
          prevKv: true,
        }),
      });
      await reference.answer(0, "the reference watch");
      let revision = 1n;
      let compacted = 0n;
      /** Responses each server sent in parts (etcd, chainfire). */
      const fragmented = [0, 0];
      try {
        for (const seed of SEEDS) {
          const rnd = new SeededRandom(BigInt(seed));
          const pick = <T>(items: readonly T[]): T => items[rnd.intBelow(items.length)]!;
          const member = () => rnd.intBelow(chainfireSide.clients.length);
          const streams: [Stream, Stream][] = Array.from({ length: STREAMS }, () => [
            new Stream(etcdSide.clients[0]!),
            new Stream(chainfireSide.clients[member()]!, true),
          ]);
          const drawn: Drawn[] = [];
          /** Per stream, the IDs its created answers gave (cancellations are drawn among them). */
          const ids: bigint[][] = streams.map(() => []);
          const referenceEvents = () => delivered(reference)[0]!.events;

          /** Both servers' streams, once every watch has delivered what it must by now; then compared. */
          const settle = async (what: string) => {
            await until(
              () => revision === 1n || referenceEvents().at(-1)?.kv.modRevision === revision,
              `${what}: the reference watch to reach revision ${revision}`,
              30_000,
            );
            const all = referenceEvents();
            for (const [s, pair] of streams.entries()) {
              const mine = drawn.filter((d) => d.stream === s);
              for (const [side, stream] of pair.entries()) {
                await until(
                  () => lagging(stream, mine, all).length === 0,
                  () =>
                    `${what}: ${side === 0 ? "etcd" : "chainfire"}'s watches on stream ${s} to deliver every event up to revision ${revision}: ${lagging(stream, mine, all).join("; ")}`,
                  30_000,
                );
              }
              const fromEtcd = delivered(pair[0]);
              const fromChainfire = delivered(pair[1]);
              for (const d of mine) {
                expect(
                  fromChainfire[d.index],
                  `${what}: stream ${s}, watch ${d.id} ${show(d.selector)}`,
                ).toStrictEqual(fromEtcd[d.index]);
              }
            }
          };

          /** A write to etcd and to any chainfire member, both outcomes compared; etcd's returned. */
          const writeBoth = async (what: string, w: WriteRequest) => {
            const fromEtcd = await write(etcdSide.clients[0]!, w);
            const fromChainfire = await write(chainfireSide.clients[member()]!, w);
            expect(fromChainfire, `${what}: ${w.rpc} ${show(w.req)}`).toStrictEqual(fromEtcd);
            return fromEtcd;
          };

          /** Sends a request on stream `s` of both servers (then a progress request, if asked) and compares the answers. */
          const ask = async (
            what: string,
            s: number,
            req: Partial<etcd.WatchRequest>,
            thenProgress: boolean,
          ) => {
            const [e, c] = streams[s]!;
            await caughtUp(c.clients);
            const answers = await Promise.all(
              [e, c].map(async (stream) => {
                const from = stream.responses.length;
                stream.send(req);
                if (thenProgress) stream.send({ progressRequest: {} });
                let end = await stream.answer(from, what);
                // Up to the progress request's answer (ID -1, not a create's refusal).
                while (
                  thenProgress &&
                  !(stream.responses[end]!.watchId === -1n && !stream.responses[end]!.created)
                )
                  end = await stream.answer(end + 1, what);
                return stream.responses
                  .slice(from, end + 1)
                  .filter(isAnswer)
                  .map(answerFields);
              }),
            );
            expect(answers[1], `${what}: ${show(req)}`).toStrictEqual(answers[0]);
            return answers[0]!;
          };

          for (let step = 0; step < STEPS; step++) {
            const what = `seed ${seed}, step ${step}`;
            const p = rnd.intBelow(100);
            if (p < 45) {
              const made = await writeBoth(what, drawWrite(rnd, step));
              if (typeof made !== "string") revision = made.revision;
            } else if (p < 67) {
              const s = rnd.intBelow(STREAMS);
              const key = rnd.chance(0.1) ? Buffer.alloc(0) : pick(KEYS);
              const ends = [
                Buffer.alloc(0),
                Buffer.from([0]),
                prefixEnd(key.length === 0 ? Buffer.from([0]) : key),
                pick(KEYS),
              ];
              const history = () => {
                const from = compacted > 1n ? compacted : 1n;
                return from + BigInt(rnd.intBelow(Number(revision - from) + 1));
              };
              const startRevision = pick([
                0n,
                0n,
                revision,
                revision + 1n,
                revision + 2n,
                // History still held, often of many events.
                history(),
                history(),
                compacted > 1n ? compacted - 1n : compacted,
              ]);
              const filters: etcd.WatchCreateRequest_FilterType[] = [];
              if (rnd.chance(0.2)) filters.push(etcd.WatchCreateRequest_FilterType.NOPUT);
              if (rnd.chance(0.2)) filters.push(etcd.WatchCreateRequest_FilterType.NODELETE);
              const req = watchCreateRequest({
                key,
                rangeEnd: pick(ends),
                startRevision,
                filters,
                prevKv: rnd.chance(0.5),
                fragment: rnd.chance(0.7),
                watchId: rnd.chance(0.7) ? 0n : BigInt(rnd.intBelow(6)),
              });
              const [created] = await ask(what, s, { createRequest: req }, false);
              if (created!.watchId >= 0n) ids[s]!.push(created!.watchId);
              if (!created!.canceled) {
                drawn.push({
                  stream: s,
                  index: drawn.filter((d) => d.stream === s).length,
                  id: created!.watchId,
                  selector: {
                    ...req,
                    startRevision: startRevision === 0n ? created!.revision! + 1n : startRevision,
                  },
                  compacted: startRevision !== 0n && startRevision < compacted,
                  compactedAt: compacted,
                });
              }
            } else if (p < 79) {
              await settle(what);
              const s = rnd.intBelow(STREAMS);
              const known = ids[s]!;
              const id = known.length > 0 && rnd.chance(0.8) ? pick(known) : BigInt(rnd.intBelow(8));
              await ask(what, s, { cancelRequest: { watchId: id } }, true);
            } else if (p < 89) {
              await ask(what, rnd.intBelow(STREAMS), { progressRequest: {} }, false);
            } else if (p < 95) {
              await settle(what);
              // Not past the start of a watch still running (see the header).
              const etcdDelivered = streams.map(([e]) => delivered(e));
              let upTo = revision;
              for (const d of drawn) {
                const w = etcdDelivered[d.stream]?.[d.index];
                if (
                  w !== undefined &&
                  !w.ended &&
                  w.compactRevision === undefined &&
                  d.selector.startRevision < upTo
                )
                  upTo = d.selector.startRevision;
              }
              const target =
                upTo > compacted ? compacted + BigInt(rnd.intBelow(Number(upTo - compacted) + 1)) : compacted;
              const made = await writeBoth(what, {
                rpc: "compact",
                req: { revision: target, physical: rnd.chance(0.5) },
              });
              if (typeof made !== "string") compacted = target;
            } else {
              await settle(what);
            }
          }
          await settle(`seed ${seed}, end`);
          for (const pair of streams) {
            for (const [side, stream] of pair.entries()) {
              fragmented[side]! += stream.fragmented;
              stream.close();
            }
          }
        }
      } finally {
        reference.close();
      }
      // The default seeds send responses past the limit to watches that asked for fragments: they
      // must still do so, or the checks of the cut have nothing to check.
      if (process.env.WATCH_DIFF_SEEDS === undefined) {
        expect(fragmented[0], "responses etcd sent in parts").toBeGreaterThan(0);
        expect(fragmented[1], "responses chainfire sent in parts").toBeGreaterThan(0);
      }
    },
    600_000 + SEEDS.length * 60_000,
  );
});

/** A value of one of the sizes, marked with the step so that every write's value differs. */
function value(rnd: SeededRandom, step: number): Buffer {
  const size = VALUE_SIZES[rnd.intBelow(VALUE_SIZES.length)]!;
  return Buffer.from(`${step}:`.padEnd(size, "x").slice(0, size));
}

/** A put, a delete of a key or range, or a txn of up to three of them (one large value at most). */
function drawWrite(rnd: SeededRandom, step: number): WriteRequest {
  const key = () => KEYS[rnd.intBelow(KEYS.length)]!;
  const del = (): etcd.DeleteRangeRequest => {
    const k = key();
    const end = [Buffer.alloc(0), Buffer.from([0]), prefixEnd(k)][rnd.intBelow(3)]!;
    return deleteRangeRequest({ key: k, rangeEnd: end, prevKv: rnd.chance(0.3) });
  };
  const p = rnd.intBelow(100);
  if (p < 60)
    return { rpc: "put", req: putRequest({ key: key(), value: value(rnd, step), prevKv: rnd.chance(0.3) }) };
  if (p < 80) return { rpc: "deleteRange", req: del() };
  for (;;) {
    let large = 0;
    const ops = Array.from({ length: 1 + rnd.intBelow(3) }, (): etcd.RequestOp => {
      if (rnd.chance(0.3)) return { requestDeleteRange: del() };
      let v = value(rnd, step);
      if (v.length > 100 && large++ > 0) v = v.subarray(0, 1);
      return { requestPut: putRequest({ key: key(), value: v }) };
    });
    const txn = { compare: [], success: ops, failure: [] };
    if (!refusedOnPurpose(txn)) return { rpc: "txn", req: txn };
  }
}
