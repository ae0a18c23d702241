// Proves the gRPC peer transport's bounds and recovery: the per-peer queue never holds more than
// peerQueueMsgsMax messages (the overflow is reported, not buffered), a dead peer is retried with
// exponential backoff up to the maximum, and a peer that comes back is reached again with the
// backoff reset; forwarded proposals travel in one ProposeBatch call, or one Propose call each
// against a member that does not serve ProposeBatch.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type * as grpc from "@grpc/grpc-js";
import { credentials } from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { makeMessage } from "../src/core/messages.js";
import { type Message, MessageType } from "../src/core/types.js";
import { bindServer } from "../src/demo/local-cluster.js";
import type * as pb from "../src/gen/raft/v1/raft.js";
import { RaftPeerClient } from "../src/gen/raft/v1/raft.js";
import { messageToProto } from "../src/transport/codec.js";
import {
  GrpcTransport,
  type GrpcTransportConfig,
  type TransportHandler,
} from "../src/transport/grpc-transport.js";
import { until } from "./helpers.js";
import { freePorts } from "./member-kit.js";

interface Endpoint {
  transport: GrpcTransport;
  received: Message[];
  unreachable: bigint[];
}

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function endpoint(
  id: bigint,
  config: Partial<GrpcTransportConfig> = {},
  handlers: Partial<Pick<TransportHandler, "onForwardedPropose" | "onForwardedProposeBatch">> = {},
): Endpoint {
  const received: Message[] = [];
  const unreachable: bigint[] = [];
  const transport = new GrpcTransport(
    id,
    {
      onMessage: (m) => received.push(m),
      onUnreachable: (p) => unreachable.push(p),
      onSnapshotStatus: () => {},
      onForwardedPropose: () => Promise.reject(new Error("not used")),
      ...handlers,
    },
    config,
  );
  cleanups.push(() => transport.stop());
  return { transport, received, unreachable };
}

/** Member 1's transport, recording the outcome of each snapshot it sends. */
function snapshotSender(config: Partial<GrpcTransportConfig>): {
  sender: GrpcTransport;
  outcomes: boolean[];
} {
  const outcomes: boolean[] = [];
  const sender = new GrpcTransport(
    1n,
    {
      onMessage: () => {},
      onUnreachable: () => {},
      onSnapshotStatus: (_p, ok) => outcomes.push(ok),
      onForwardedPropose: () => Promise.reject(new Error("not used")),
    },
    config,
  );
  cleanups.push(() => sender.stop());
  return { sender, outcomes };
}

async function serve(e: Endpoint, port = 0): Promise<{ server: grpc.Server; url: string }> {
  const bound = await bindServer(port);
  e.transport.register(bound.server);
  cleanups.push(() => bound.server.forceShutdown());
  return bound;
}

const heartbeat = (to: bigint, commit: bigint) =>
  makeMessage({ type: MessageType.Heartbeat, from: 1n, to, term: 1n, commit });

describe("GrpcTransport", () => {
  it("counts the bytes sent to each peer and received from each known one alike", async () => {
    // Proves etcd's peer traffic counters: what one side counts as sent, the other counts as
    // received from it, and a sender this member does not know adds nothing.
    const receiver = endpoint(2n);
    const { url } = await serve(receiver);
    receiver.transport.setPeer(1n, "http://127.0.0.1:1");
    const sender = endpoint(1n);
    sender.transport.setPeer(2n, url);
    const stranger = endpoint(9n);
    stranger.transport.setPeer(2n, url);
    for (let i = 1; i <= 3; i++) {
      sender.transport.send([heartbeat(2n, BigInt(i))]);
      await until(`message ${i} delivered`, () => receiver.received.length === i);
    }
    stranger.transport.send([makeMessage({ type: MessageType.Heartbeat, from: 9n, to: 2n, term: 1n })]);
    await until("the stranger's message delivered", () => receiver.received.length === 4);
    const sent = sender.transport.bytesSent.get(2n)!;
    expect(sent).toBeGreaterThan(0);
    expect(receiver.transport.bytesReceived.get(1n)).toBe(sent);
    expect(receiver.transport.bytesReceived.has(9n)).toBe(false);
    expect(stranger.transport.bytesSent.get(2n)).toBeGreaterThan(0);
  });

  it("counts snapshots sent and received per peer, with their durations, and failed sends", async () => {
    // Proves etcd's etcd_network_snapshot_* sources: a delivered snapshot counts as a success on
    // both sides (none left in flight), a send to a peer that is down as a failure, and a snapshot
    // from a sender this member does not know adds nothing.
    const receiver = endpoint(2n);
    const { url } = await serve(receiver);
    receiver.transport.setPeer(1n, "http://127.0.0.1:1");
    const sender = endpoint(1n, { snapshotChunkBytes: 1000 });
    sender.transport.setPeer(2n, url);
    const [downPort] = await freePorts(1);
    sender.transport.setPeer(3n, `http://127.0.0.1:${downPort}`);
    const transferred: string[] = [];
    for (const e of [sender, receiver])
      e.transport.onSnapshotTransferred = (direction, peer, seconds) => {
        expect(seconds).toBeGreaterThanOrEqual(0);
        transferred.push(`${e.transport.selfId} ${direction} ${peer}`);
      };
    const snap = (from: bigint, to: bigint) =>
      makeMessage({
        type: MessageType.Snap,
        from,
        to,
        term: 1n,
        snapshot: {
          metadata: { index: 5n, term: 1n, confState: { voters: [1n, 2n], learners: [] } },
          data: new Uint8Array(4500).fill(7),
        },
      });
    sender.transport.send([snap(1n, 2n), snap(1n, 3n)]);
    expect(sender.transport.snapshotsSent.inflight.get(2n)).toBe(1);
    await until(
      "both sends finished",
      () =>
        sender.transport.snapshotsSent.inflight.get(3n) === 0 &&
        sender.transport.snapshotsSent.inflight.get(2n) === 0,
    );
    expect(receiver.received.map((m) => m.snapshot?.data.length)).toEqual([4500]);
    const sent = sender.transport.snapshotsSent;
    expect([...sent.success]).toEqual([[2n, 1]]);
    expect([...sent.failures]).toEqual([[3n, 1]]);
    const got = receiver.transport.snapshotsReceived;
    expect([...got.success]).toEqual([[1n, 1]]);
    expect([...got.failures]).toEqual([]);
    expect(got.inflight.get(1n)).toBe(0);
    expect(transferred.sort()).toEqual(["1 sent 2", "2 received 1"]);

    // A sender that goes away after the first message: a failure, nothing left in flight.
    const client = new RaftPeerClient(url.replace(/^http:\/\//, ""), credentials.createInsecure());
    cleanups.push(() => client.close());
    const torn = client.installSnapshot(() => {});
    torn.on("error", () => {});
    const head = snap(1n, 2n);
    torn.write({ message: messageToProto(head), data: Buffer.alloc(0), totalBytes: 4500n });
    await until("the torn transfer under way", () => got.inflight.get(1n) === 1);
    torn.cancel();
    await until("the torn transfer counted as failed", () => got.failures.get(1n) === 1);
    expect(got.inflight.get(1n)).toBe(0);
    expect(got.success.get(1n)).toBe(1);

    const stranger = endpoint(9n);
    stranger.transport.setPeer(2n, url);
    stranger.transport.send([snap(9n, 2n)]);
    await until("the stranger's snapshot delivered", () => receiver.received.length === 2);
    expect(got.success.has(9n)).toBe(false);
    expect(got.inflight.has(9n)).toBe(false);
  });

  it("streams a snapshot held in a file into a file on the receiver, and refuses one cut short", async () => {
    // Proves snapshots of any size travel with bounded memory: the sender reads the file a chunk at
    // a time, the receiver writes each chunk to the file it was given and hands that file on (no
    // data in memory); a transfer that ends short of the bytes announced is refused and its file
    // removed.
    const dir = mkdtempSync(join(tmpdir(), "raft-transport-snap-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    let nextFile = 0;
    const receiver = endpoint(2n, { receiveSnapshotInto: (index) => join(dir, `in-${index}-${nextFile++}`) });
    const { url } = await serve(receiver);
    receiver.transport.setPeer(1n, "http://127.0.0.1:1");
    const { sender, outcomes } = snapshotSender({ snapshotChunkBytes: 64 * 1024 });
    sender.setPeer(2n, url);
    const content = Buffer.alloc(5 * 1024 * 1024 + 123);
    for (let i = 0; i + 4 <= content.length; i += 4) content.writeUInt32BE(i, i);
    const source = join(dir, "snap-7.snap");
    writeFileSync(source, content);
    const snap = (bytes: number) =>
      makeMessage({
        type: MessageType.Snap,
        from: 1n,
        to: 2n,
        term: 1n,
        snapshot: {
          metadata: { index: 7n, term: 1n, confState: { voters: [1n, 2n], learners: [] } },
          data: new Uint8Array(),
          file: { path: source, bytes },
        },
      });
    sender.send([snap(content.length)]);
    await until("the snapshot delivered", () => receiver.received.length === 1);
    const got = receiver.received[0]!.snapshot!;
    expect(got.data.length).toBe(0);
    expect(got.file).toEqual({ path: join(dir, "in-7-0"), bytes: content.length });
    expect(readFileSync(got.file!.path).equals(content)).toBe(true);
    await until("the sender told of the outcome", () => outcomes.length === 1);
    expect(outcomes).toEqual([true]);

    // Announced longer than the file: the sender gives up at the file's end.
    sender.send([snap(content.length + 1)]);
    await until("the short transfer refused", () => outcomes.length === 2);
    expect(outcomes[1]).toBe(false);

    // A sender that ends its stream with fewer bytes than it announced: refused by the receiver.
    const client = new RaftPeerClient(url.replace(/^http:\/\//, ""), credentials.createInsecure());
    cleanups.push(() => client.close());
    const answer = new Promise<pb.SnapshotAck | undefined>((resolve) => {
      const short = client.installSnapshot((err, ack) => resolve(err === null ? ack : undefined));
      short.write({ message: messageToProto(snap(100)), data: Buffer.alloc(0), totalBytes: 100n });
      short.write({ message: undefined, data: Buffer.alloc(50, 1), totalBytes: 0n });
      short.end();
    });
    expect((await answer)?.ok).toBe(false);
    expect(receiver.received).toHaveLength(1);
    await until("the refused transfers' files removed", () => readdirSync(dir).length === 2);
    expect(readdirSync(dir).sort()).toEqual(["in-7-0", "snap-7.snap"]);
  });

  it("gives up a snapshot whose receiver takes every byte and never answers", async () => {
    // Proves a follower that dies after the last chunk (its host lost before it sent the
    // acknowledgement) does not keep the sender waiting for ever: the core sends that follower
    // nothing until it hears the outcome, so the sender must report a failure.
    const silent = await bindServer();
    cleanups.push(() => silent.server.forceShutdown());
    let bytes = 0;
    let ended = false;
    silent.server.addService(GrpcTransport.serviceDefinition(), {
      installSnapshot: (call: grpc.ServerReadableStream<pb.SnapshotChunk, pb.SnapshotAck>) => {
        call.on("data", (c: pb.SnapshotChunk) => {
          bytes += c.data.length;
        });
        call.on("end", () => {
          ended = true; // and no answer
        });
      },
    });
    const { sender, outcomes } = snapshotSender({ snapshotIdleTimeoutMs: 300 });
    sender.setPeer(2n, silent.url);
    const data = new Uint8Array(100_000).fill(3);
    sender.send([
      makeMessage({
        type: MessageType.Snap,
        from: 1n,
        to: 2n,
        term: 1n,
        snapshot: { metadata: { index: 9n, term: 1n, confState: { voters: [1n, 2n], learners: [] } }, data },
      }),
    ]);
    await until("the sender reported the outcome", () => outcomes.length === 1);
    expect(outcomes).toEqual([false]);
    expect({ ended, bytes }).toEqual({ ended: true, bytes: data.length });
  });

  it("gives up a snapshot whose sender goes silent, removing what it received", async () => {
    // Proves a half-open transfer (a sender gone without closing its stream) does not hold the call
    // and a partial file for good: with no chunk for snapshotIdleTimeoutMs the receiver answers
    // with an error, counts a failure and removes the file.
    const dir = mkdtempSync(join(tmpdir(), "raft-transport-idle-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const receiver = endpoint(2n, {
      receiveSnapshotInto: (index) => join(dir, `in-${index}`),
      snapshotIdleTimeoutMs: 300,
    });
    const { url } = await serve(receiver);
    receiver.transport.setPeer(1n, "http://127.0.0.1:1");
    const client = new RaftPeerClient(url.replace(/^http:\/\//, ""), credentials.createInsecure());
    cleanups.push(() => client.close());
    const head = makeMessage({
      type: MessageType.Snap,
      from: 1n,
      to: 2n,
      term: 1n,
      snapshot: {
        metadata: { index: 9n, term: 1n, confState: { voters: [1n, 2n], learners: [] } },
        data: new Uint8Array(),
      },
    });
    let stream: grpc.ClientWritableStream<pb.SnapshotChunk> | undefined;
    const answer = new Promise<grpc.ServiceError | null>((resolve) => {
      stream = client.installSnapshot((err) => resolve(err));
      stream.write({ message: messageToProto(head), data: Buffer.alloc(0), totalBytes: 1000n });
      stream.write({ message: undefined, data: Buffer.alloc(400, 1), totalBytes: 0n });
      // ...and nothing more: neither the rest nor the end of the stream.
    });
    await until("the partial file", () => readdirSync(dir).length === 1);
    const err = await answer;
    expect(err?.code).toBe(4); // DEADLINE_EXCEEDED
    expect(err?.details).toMatch(/no snapshot chunk for 300 ms/);
    expect(readdirSync(dir)).toEqual([]);
    expect(receiver.transport.snapshotsReceived.failures.get(1n)).toBe(1);
    expect(receiver.received).toEqual([]);
    stream?.end();
  });

  it("holds at most peerQueueMsgsMax messages per peer and reports the overflow", async () => {
    // Proves the bound: messages beyond it in one turn are dropped and reported, the rest arrive in order.
    const receiver = endpoint(2n);
    const { url } = await serve(receiver);
    const sender = endpoint(1n, { peerQueueMsgsMax: 4 });
    sender.transport.setPeer(2n, url);
    sender.transport.send(Array.from({ length: 10 }, (_, i) => heartbeat(2n, BigInt(i + 1))));
    expect(sender.transport.peerStats(2n)?.queuedMsgs).toBe(4);
    expect(sender.unreachable).toEqual(Array(6).fill(2n));
    await until("4 messages delivered", () => receiver.received.length >= 4);
    expect(receiver.received.map((m) => m.commit)).toEqual([1n, 2n, 3n, 4n]);
    // The queue drains in one batch; later sends are accepted again.
    sender.transport.send([heartbeat(2n, 11n)]);
    await until("a later message delivered", () => receiver.received.some((m) => m.commit === 11n));
    expect(receiver.received).toHaveLength(5);
  });

  it("backs off exponentially from a dead peer, then reconnects and resets the backoff", async () => {
    // Proves reconnect with backoff bounded by reconnectBackoffMaxMs and recovery once the peer listens.
    const [port] = await freePorts(1);
    const sender = endpoint(1n, { reconnectBackoffMinMs: 20, reconnectBackoffMaxMs: 160 });
    sender.transport.setPeer(2n, `http://127.0.0.1:${port}`);
    expect(sender.transport.peerStats(2n)?.backoffMs).toBe(20);
    const seen = new Set<number>();
    let n = 0n;
    await until("backoff reaches the maximum", () => {
      sender.transport.send([heartbeat(2n, ++n)]);
      seen.add(sender.transport.peerStats(2n)!.backoffMs);
      return sender.transport.peerStats(2n)!.backoffMs === 160;
    });
    expect([...seen].sort((a, b) => a - b)).toEqual(expect.arrayContaining([40, 80, 160]));
    expect(sender.unreachable.length).toBeGreaterThan(0);
    // Kept at the maximum while the peer stays down.
    await until("several more failures", () => {
      sender.transport.send([heartbeat(2n, ++n)]);
      return sender.unreachable.length > 20;
    });
    expect(sender.transport.peerStats(2n)?.backoffMs).toBe(160);

    const receiver = endpoint(2n);
    await serve(receiver, port);
    await until("a message reaches the restarted peer", () => {
      sender.transport.send([heartbeat(2n, ++n)]);
      return receiver.received.length > 0;
    });
    await until("backoff reset after reconnecting", () => {
      sender.transport.send([heartbeat(2n, ++n)]);
      return sender.transport.peerStats(2n)?.backoffMs === 20;
    });
    expect(sender.transport.peerStats(2n)?.connected).toBe(true);
  });

  it("forwards proposals in one ProposeBatch call, or one Propose each to a member without it", async () => {
    // Proves the batch keeps the commands' order in its results, and the fallback for older members.
    const answer = (c: Uint8Array, index: bigint): pb.ProposeResponse => ({
      result: Buffer.from(c).reverse(),
      index,
      errorCode: "",
      errorMessage: "",
      leaderHint: 0n,
    });
    const batches: number[] = [];
    let unary = 0;
    const batching = endpoint(
      2n,
      {},
      {
        onForwardedProposeBatch: (cs) => {
          batches.push(cs.length);
          return Promise.resolve(cs.map((c, i) => answer(c, BigInt(i + 1))));
        },
      },
    );
    const older = endpoint(
      3n,
      {},
      {
        onForwardedPropose: (c) => {
          unary++;
          return Promise.resolve(answer(c, 7n));
        },
      },
    );
    const sender = endpoint(1n);
    sender.transport.setPeer(2n, (await serve(batching)).url);
    sender.transport.setPeer(3n, (await serve(older)).url);
    const commands = [Buffer.from("ab"), Buffer.from("cd"), Buffer.from("ef")];
    const viaBatch = await sender.transport.forwardProposeBatch(2n, commands);
    expect(batches).toEqual([3]);
    expect(viaBatch.map((r) => [Buffer.from(r.result).toString(), r.index])).toEqual([
      ["ba", 1n],
      ["dc", 2n],
      ["fe", 3n],
    ]);
    const viaUnary = await sender.transport.forwardProposeBatch(3n, commands);
    expect(unary).toBe(3);
    expect(viaUnary.map((r) => Buffer.from(r.result).toString())).toEqual(["ba", "dc", "fe"]);
  });
});
