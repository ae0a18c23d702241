// The gRPC peer transport: one long-lived client stream of message BATCHES per peer, a bounded
// queue per peer (drained in one batch per flush), reconnect with exponential backoff, chunked
// snapshot transfer, and proposal forwarding to the leader (batched per event-loop turn). Failures are reported back to the
// node (unreachable peers, snapshot outcomes) so the core can adjust its replication state.
//
// The batch streams, which carry every message between members, go over the daemon kit's own HTTP/2
// client (GrpcClientConnection) rather than grpc-js: grpc-js spends a chain of call objects and a
// Node http2 stream write on every batch. Same method, same bytes on the wire. grpc-js still carries
// them to https:// peers when the TLS options are unknown (custom `credentialsFor` only), and when
// PHOTON_PEER_LEAN_STREAMS=0 (to compare, or to rule the lean client out). Snapshots, forwarded
// proposals and membership calls stay on grpc-js.
import { closeSync, fdatasync, openSync, read, rmSync, writeSync } from "node:fs";
import type { ConnectionOptions } from "node:tls";
import * as grpc from "@grpc/grpc-js";
import { GrpcClientConnection, type GrpcClientTarget, reusingEncoder } from "@photoncloud/daemon";
import { type Message, MessageType, type NodeId, type SnapshotDataFile } from "../core/types.js";
import * as pb from "../gen/raft/v1/raft.js";
import { messageFromProto, messageToProto, toBuffer } from "./codec.js";

export interface TransportHandler {
  /** A message from a peer, to be stepped into the core. */
  onMessage(m: Message): void;
  /** `peer` could not be reached; `messages` (default 1) were dropped or lost with its stream. */
  onUnreachable(peer: NodeId, messages?: number): void;
  onSnapshotStatus(peer: NodeId, ok: boolean): void;
  /** A proposal forwarded by a follower; resolves once applied on this member. */
  onForwardedPropose(command: Uint8Array): Promise<pb.ProposeResponse>;
  /**
   * Proposals a follower forwarded in one call; one result per command, in order. Without it the
   * ProposeBatch RPC answers UNIMPLEMENTED (the follower then falls back to Propose).
   */
  onForwardedProposeBatch?(commands: readonly Uint8Array[]): Promise<pb.ProposeResponse[]>;
  /** A membership operation forwarded by a non-leader member; resolves once applied here. */
  onForwardedMembership?(request: pb.MembershipRequest): Promise<pb.MembershipResponse>;
  /** This member's view of the cluster's identity (cluster ID 0 when unknown). */
  onClusterInfo?(): pb.ClusterInfoResponse;
}

export interface GrpcTransportConfig {
  /** Messages waiting per peer beyond which new messages to it are dropped (Raft retransmits). */
  peerQueueMsgsMax: number;
  /** Snapshot chunk size on the wire. */
  snapshotChunkBytes: number;
  reconnectBackoffMinMs: number;
  /**
   * The longest wait between attempts to reach a peer that is down. A member that comes back is
   * reached within it: etcd's peers dial every 100 ms.
   */
  reconnectBackoffMaxMs: number;
  /** Deadline of a forwarded proposal. */
  forwardTimeoutMs: number;
  /** Client credentials for every peer connection (TLS/mTLS); see `credentialsFor`. */
  credentials?: grpc.ChannelCredentials;
  /**
   * Client credentials per peer URL (takes precedence over `credentials`). Without either, https://
   * peers get TLS with the system roots and http:// peers are plain.
   */
  credentialsFor?: (url: string) => grpc.ChannelCredentials;
  /**
   * The TLS options (CA, client certificate) for an https:// peer's batch stream on the kit's HTTP/2
   * client; they must match `credentialsFor`. Without them, https:// batch streams use grpc-js.
   */
  tlsFor?: (url: string) => ConnectionOptions | undefined;
  /**
   * Where to receive a snapshot at an index: a new file the data is written to as it arrives (and
   * synced), handed on as the snapshot's `file`. Without it, or when it answers null, the data is
   * gathered in memory.
   */
  receiveSnapshotInto?: (index: bigint) => string | null;
  /**
   * A snapshot being received with no chunk for this long is given up (the call cancelled, its
   * file removed): a sender gone without closing its stream (a half-open connection) would
   * otherwise hold the call and a partial file until the connection is found dead. etcd bounds a
   * peer request's whole read at 5 minutes. A sender waits as long for the receiver's answer
   * after its last chunk (the receiver syncs the file first), then cancels the call.
   */
  snapshotIdleTimeoutMs: number;
}

export interface PeerStats {
  url: string;
  /** Last found reachable (a batch sent on a connected stream, or a ClusterInfo call answered). */
  active: boolean;
  /** How many times the peer was found unreachable after being active. */
  disconnects: number;
  /** Messages waiting for the next flush (at most peerQueueMsgsMax). */
  queuedMsgs: number;
  /** The wait after the next stream failure (doubles per failure up to reconnectBackoffMaxMs). */
  backoffMs: number;
  /** True while sends are being dropped after a failure. */
  backingOff: boolean;
  streamOpen: boolean;
  /** The connection under the batch stream is up. */
  connected: boolean;
  /** When the batch stream to the peer last failed (`performance.now()` ms), or null if never. */
  lastFailureMs: number | null;
}

export const DEFAULT_TRANSPORT_CONFIG: GrpcTransportConfig = {
  peerQueueMsgsMax: 4096,
  snapshotChunkBytes: 1 << 20,
  reconnectBackoffMinMs: 50,
  reconnectBackoffMaxMs: 200,
  forwardTimeoutMs: 10_000,
  snapshotIdleTimeoutMs: 60_000,
};

const SEND_MESSAGES = pb.RaftPeerService.sendMessages;

/** Reads into `buffer` from `position` of the open file `fd`, on libuv's thread pool. */
function readAt(fd: number, buffer: Buffer, position: number): Promise<{ bytesRead: number }> {
  return new Promise((resolve, reject) =>
    read(fd, buffer, 0, buffer.length, position, (err, bytesRead) =>
      err ? reject(err) : resolve({ bytesRead }),
    ),
  );
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
}

/** How long a replaced or closed peer connection may take to finish its stream. */
const CONNECTION_CLOSE_MS = 1000;

/** The stream of batches to one peer: grpc-js's client stream, or one of the kit's HTTP/2 client. */
interface BatchStream {
  /** Writes one encoded MessageBatch. False: wait for `whenDrained` before writing more. */
  write(batch: Buffer): boolean;
  whenDrained(fn: () => void): void;
  end(): void;
}

type StreamDone = (err: Error | null) => void;

function grpcJsBatchStream(client: pb.RaftPeerClient, onDone: StreamDone): BatchStream {
  const stream = client.makeClientStreamRequest(
    SEND_MESSAGES.path,
    (encoded: Buffer) => encoded,
    SEND_MESSAGES.responseDeserialize,
    (err: grpc.ServiceError | null) => onDone(err),
  );
  stream.on("error", () => {
    /* reported through the callback */
  });
  return {
    write: (batch) => stream.write(batch),
    whenDrained: (fn) => stream.once("drain", fn),
    end: () => stream.end(),
  };
}

function leanBatchStream(connection: GrpcClientConnection, onDone: StreamDone): BatchStream {
  const stream = connection.clientStream(SEND_MESSAGES.path, (result) => {
    if (result.code === grpc.status.OK) onDone(null);
    else onDone(Object.assign(new Error(result.details), { code: result.code }));
  });
  return {
    write: (batch) => stream.write(batch),
    whenDrained: (fn) => {
      stream.onDrain = () => {
        stream.onDrain = null;
        fn();
      };
    },
    end: () => stream.end(),
  };
}

/** Where a peer URL's batch stream goes on the kit's HTTP/2 client, or null to use grpc-js. */
function leanTarget(url: string, config: GrpcTransportConfig): GrpcClientTarget | null {
  if (process.env.PHOTON_PEER_LEAN_STREAMS === "0") return null;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return null;
  }
  const host = parsed.hostname.replace(/^\[(.*)\]$/, "$1");
  const https = parsed.protocol === "https:";
  const port = Number(parsed.port || (https ? 443 : 80));
  if (parsed.protocol === "http:") return { host, port };
  if (!https) return null;
  const tls = config.tlsFor?.(url);
  return tls === undefined ? null : { host, port, tls };
}
/**
 * Outgoing batches are encoded through one reused writer: an AppendEntries batch runs to tens of
 * kilobytes, and the generated serializer grows a fresh buffer by doubling for each one, then copies
 * the bytes twice.
 */
const encodeBatch = reusingEncoder(pb.MessageBatch);

class Peer {
  client: pb.RaftPeerClient;
  queue: Message[] = [];
  stream: BatchStream | null = null;
  /** The kit's HTTP/2 connection for the batch stream (null: grpc-js carries it, or none yet). */
  connection: GrpcClientConnection | null = null;
  /**
   * The generation a connection is being opened for (messages wait in the queue meanwhile), or -1.
   * A dial for an older URL still in flight does not hold back one for the new URL.
   */
  private connectingFor = -1;
  /** Bumped when the URL changes or the peer closes: a connection opened for an older one is dropped. */
  private generation = 0;
  flushScheduled = false;
  blocked = false;
  /** The peer answered UNIMPLEMENTED to ProposeBatch (an older version): forward one by one. */
  noProposeBatch = false;
  backoffMs: number;
  retryAt = 0;
  closed = false;
  /**
   * The peer was last found reachable: a batch went out on a connected stream, or a ClusterInfo call
   * was answered, and neither has failed since (etcd's "active" peer). `disconnects` counts the
   * times an active peer was then found unreachable (etcd_network_active_peers, _disconnected_peers_total).
   */
  active = false;
  disconnects = 0;
  /** See PeerStats.lastFailureMs. */
  lastFailureMs: number | null = null;

  reachable(yes: boolean): void {
    if (!yes && this.active) this.disconnects++;
    this.active = yes;
  }

  constructor(
    readonly id: NodeId,
    public url: string,
    private readonly t: GrpcTransport,
  ) {
    this.client = t.makeClient(url);
    this.backoffMs = t.config.reconnectBackoffMinMs;
  }

  setUrl(url: string): void {
    if (url === this.url) return;
    this.url = url;
    this.generation++;
    this.dropStream();
    this.closeConnection();
    this.client.close();
    this.client = this.t.makeClient(url);
    this.retryAt = 0;
    this.noProposeBatch = false;
  }

  enqueue(m: Message): void {
    if (this.queue.length >= this.t.config.peerQueueMsgsMax) {
      this.t.handler.onUnreachable(this.id);
      return;
    }
    this.queue.push(m);
    this.scheduleFlush();
  }

  scheduleFlush(): void {
    if (this.flushScheduled || this.closed) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /** Sends what is queued now (in one batch); the flush scheduled for the end of the turn finds nothing. */
  flush(): void {
    if (this.queue.length === 0 || this.blocked || this.closed) return;
    const now = performance.now();
    if (now < this.retryAt) {
      // Still backing off: drop what is queued (Raft resends) and report the peer unreachable.
      const dropped = this.queue.length;
      this.queue = [];
      this.t.handler.onUnreachable(this.id, dropped);
      return;
    }
    // A connected channel ends the backoff: the next failure starts again from the minimum.
    if (this.connected()) {
      this.markHealthy();
      this.reachable(true);
    }
    const stream = this.ensureStream();
    if (stream === null) return; // connecting: the queue is sent once connected
    const batch = this.queue;
    this.queue = [];
    const encoded = encodeBatch({ messages: batch.map(messageToProto) });
    this.t.countSent(this.id, encoded.length);
    const ok = stream.write(encoded);
    // To the socket now: the batch is this turn's (or the caller's) whole output to the peer.
    this.connection?.flush();
    if (!ok) {
      this.blocked = true;
      stream.whenDrained(() => {
        if (this.stream !== stream) return;
        this.blocked = false;
        this.scheduleFlush();
      });
    }
  }

  connected(): boolean {
    if (this.connection !== null) return this.connection.ready;
    return this.client.getChannel().getConnectivityState(false) === grpc.connectivityState.READY;
  }

  /** The batch stream, opened if need be; null while its connection is being opened. */
  private ensureStream(): BatchStream | null {
    if (this.stream !== null) return this.stream;
    const onDone: StreamDone = (err) => {
      if (this.stream === stream) this.onStreamError(err);
    };
    const target = leanTarget(this.url, this.t.config);
    let stream: BatchStream;
    if (target === null) stream = grpcJsBatchStream(this.client, onDone);
    else {
      // A connection that failed or is going away takes no new stream: a fresh one is opened.
      if (this.connection === null || !this.connection.usable) {
        this.connection?.destroy();
        this.connection = null;
        this.connect(target);
        return null;
      }
      stream = leanBatchStream(this.connection, onDone);
    }
    this.stream = stream;
    return stream;
  }

  private connect(target: GrpcClientTarget): void {
    if (this.connectingFor === this.generation) return;
    const generation = this.generation;
    this.connectingFor = generation;
    GrpcClientConnection.connect(target).then(
      (connection) => {
        if (generation !== this.generation) {
          connection.destroy();
          return;
        }
        this.connectingFor = -1;
        this.connection = connection;
        this.scheduleFlush();
      },
      (err: Error) => {
        if (generation !== this.generation) return;
        this.connectingFor = -1;
        this.onStreamError(err);
      },
    );
  }

  private onStreamError(err: Error | null): void {
    this.stream = null;
    this.blocked = false;
    if (this.closed) return;
    if (err !== null) {
      this.reachable(false);
      this.lastFailureMs = performance.now();
      // The peer may come back as a newer version: ask it for ProposeBatch again.
      this.noProposeBatch = false;
      this.retryAt = performance.now() + this.backoffMs;
      this.backoffMs = Math.min(this.backoffMs * 2, this.t.config.reconnectBackoffMaxMs);
      this.t.handler.onUnreachable(this.id);
    }
  }

  markHealthy(): void {
    this.backoffMs = this.t.config.reconnectBackoffMinMs;
  }

  dropStream(): void {
    const s = this.stream;
    this.stream = null;
    this.blocked = false;
    s?.end();
  }

  /** Lets the batch stream's connection finish what it carries, then closes it (in a second at most). */
  private closeConnection(): void {
    const connection = this.connection;
    if (connection === null) return;
    this.connection = null;
    connection.close();
    setTimeout(() => connection.destroy(), CONNECTION_CLOSE_MS).unref();
  }

  close(): void {
    this.closed = true;
    this.generation++;
    this.dropStream();
    this.closeConnection();
    this.client.close();
  }
}

/** A batch as the peer service decodes it, with the size it had on the wire. */
type ReceivedBatch = pb.MessageBatch & { wireBytes?: number };

/** Snapshot transfers in one direction, per peer: finished well, failed, under way. */
export interface SnapshotTransfers {
  readonly success: Map<NodeId, number>;
  readonly failures: Map<NodeId, number>;
  readonly inflight: Map<NodeId, number>;
}

const snapshotTransfers = (): SnapshotTransfers => ({
  success: new Map(),
  failures: new Map(),
  inflight: new Map(),
});

const bump = (counts: Map<NodeId, number>, peer: NodeId, by = 1) =>
  counts.set(peer, (counts.get(peer) ?? 0) + by);

export class GrpcTransport {
  readonly config: GrpcTransportConfig;
  private readonly peers = new Map<NodeId, Peer>();
  private stopped = false;
  /**
   * Bytes of Raft messages and snapshots sent to each peer and received from each, as etcd counts
   * them for etcd_network_peer_{sent,received}_bytes_total (encoded messages, no framing).
   */
  readonly bytesSent = new Map<NodeId, number>();
  readonly bytesReceived = new Map<NodeId, number>();
  /** Snapshots sent to each peer and received from each, as etcd counts them (etcd_network_snapshot_*). */
  readonly snapshotsSent = snapshotTransfers();
  readonly snapshotsReceived = snapshotTransfers();
  /** Called with each snapshot transfer that went well and how long it took, in seconds. */
  onSnapshotTransferred?: (direction: "sent" | "received", peer: NodeId, seconds: number) => void;

  constructor(
    readonly selfId: NodeId,
    readonly handler: TransportHandler,
    config: Partial<GrpcTransportConfig> = {},
  ) {
    this.config = { ...DEFAULT_TRANSPORT_CONFIG, ...config };
  }

  makeClient(url: string): pb.RaftPeerClient {
    const target = url.replace(/^(https?|grpcs?):\/\//, "");
    const credentials =
      this.config.credentialsFor?.(url) ??
      this.config.credentials ??
      (url.startsWith("https://") ? grpc.credentials.createSsl() : grpc.credentials.createInsecure());
    return new pb.RaftPeerClient(target, credentials, {
      "grpc.max_receive_message_length": 256 << 20,
      "grpc.max_send_message_length": 256 << 20,
      // grpc-js's own reconnect backoff (1 s up to 120 s by default) would delay reaching a restarted
      // peer long after our backoff allows it: keep both on the same bounds.
      "grpc.initial_reconnect_backoff_ms": this.config.reconnectBackoffMinMs,
      "grpc.max_reconnect_backoff_ms": this.config.reconnectBackoffMaxMs,
    });
  }

  /** Adds a peer or changes its URL (in-place endpoint replacement). */
  setPeer(id: NodeId, url: string): void {
    if (id === this.selfId || this.stopped) return;
    const p = this.peers.get(id);
    if (p === undefined) this.peers.set(id, new Peer(id, url, this));
    else p.setUrl(url);
  }

  removePeer(id: NodeId): void {
    this.peers.get(id)?.close();
    this.peers.delete(id);
  }

  peerUrl(id: NodeId): string | undefined {
    return this.peers.get(id)?.url;
  }

  /** A peer's connection state, for status pages and tests. */
  peerStats(id: NodeId): PeerStats | undefined {
    const p = this.peers.get(id);
    if (p === undefined) return undefined;
    return {
      url: p.url,
      active: p.active,
      disconnects: p.disconnects,
      queuedMsgs: p.queue.length,
      backoffMs: p.backoffMs,
      backingOff: performance.now() < p.retryAt,
      streamOpen: p.stream !== null,
      connected: p.connected(),
      lastFailureMs: p.lastFailureMs,
    };
  }

  /** Writes every peer's queued messages now instead of at the end of this turn. */
  flush(): void {
    for (const p of this.peers.values()) p.flush();
  }

  send(msgs: readonly Message[]): void {
    for (const m of msgs) {
      const p = this.peers.get(m.to);
      if (p === undefined) {
        if (m.type === MessageType.Snap) this.handler.onSnapshotStatus(m.to, false);
        else this.handler.onUnreachable(m.to);
        continue;
      }
      if (m.type === MessageType.Snap) this.sendSnapshot(p, m);
      else p.enqueue(m);
    }
  }

  private sendSnapshot(p: Peer, m: Message): void {
    const file = m.snapshot?.file;
    const data = m.snapshot?.data ?? new Uint8Array();
    // Opened now: the storage may let go of the file (delete it) while it is being sent.
    let fd: number | null = null;
    if (file !== undefined) {
      try {
        fd = openSync(file.path, "r");
      } catch {
        this.handler.onSnapshotStatus(p.id, false);
        return;
      }
    }
    const totalBytes = file?.bytes ?? data.length;
    const started = performance.now();
    const sent = this.snapshotsSent;
    bump(sent.inflight, p.id);
    let ended = false;
    // Wakes the file loop below when it waits for room and the call ends instead (grpc-js reports
    // a failed client stream only to this callback).
    let wake: (() => void) | null = null;
    // Armed once the last chunk is sent: a receiver that dies after taking every byte never
    // answers, nothing else is sent on this call, and the core sends the follower nothing until
    // it hears the outcome. etcd bounds the same wait (its snapResponseReadTimeout).
    let answerDue: NodeJS.Timeout | null = null;
    const awaitAnswer = () => {
      if (ended) return;
      answerDue = setTimeout(() => call.cancel(), this.config.snapshotIdleTimeoutMs);
      answerDue.unref();
    };
    const call = p.client.installSnapshot((err, ack) => {
      ended = true;
      if (answerDue !== null) clearTimeout(answerDue);
      wake?.();
      const ok = err === null && ack?.ok === true;
      bump(sent.inflight, p.id, -1);
      bump(ok ? sent.success : sent.failures, p.id);
      if (ok) {
        p.markHealthy();
        this.onSnapshotTransferred?.("sent", p.id, (performance.now() - started) / 1000);
      }
      this.handler.onSnapshotStatus(p.id, ok);
    });
    call.on("error", () => {
      /* reported through the callback */
    });
    call.write({ message: messageToProto(m), data: Buffer.alloc(0), totalBytes: BigInt(totalBytes) });
    this.countSent(p.id, totalBytes);
    const chunk = this.config.snapshotChunkBytes;
    if (fd === null) {
      for (let off = 0; off < data.length; off += chunk) {
        call.write({ message: undefined, data: toBuffer(data.subarray(off, off + chunk)), totalBytes: 0n });
      }
      call.end();
      awaitAnswer();
      return;
    }
    // From the file, a chunk at a time off the event loop, each once the call has room for it.
    const from = fd;
    void (async () => {
      try {
        for (let position = 0; position < totalBytes && !ended; ) {
          const piece = Buffer.allocUnsafe(Math.min(chunk, totalBytes - position));
          const { bytesRead } = await readAt(from, piece, position);
          if (bytesRead === 0) throw new Error(`${file!.path} ended at ${position} of ${totalBytes} bytes`);
          position += bytesRead;
          const room = call.write({ message: undefined, data: piece.subarray(0, bytesRead), totalBytes: 0n });
          if (!room && !ended) {
            await new Promise<void>((resolve) => {
              // A receiver that takes nothing for as long as it would wait for a chunk is gone.
              const stalled = setTimeout(() => call.cancel(), this.config.snapshotIdleTimeoutMs);
              const done = () => {
                clearTimeout(stalled);
                call.off("drain", done);
                wake = null;
                resolve();
              };
              wake = done;
              call.on("drain", done);
            });
          }
        }
        call.end();
        awaitAnswer();
      } catch {
        // A short file: the receiver sees fewer bytes than announced and refuses it.
        call.cancel();
      } finally {
        closeSync(from);
      }
    })();
  }

  /** Forwards a proposal to `leader`; rejects with the gRPC error when it cannot be reached. */
  forwardPropose(leader: NodeId, command: Uint8Array): Promise<pb.ProposeResponse> {
    const p = this.peers.get(leader);
    if (p === undefined) return Promise.reject(new Error(`no URL known for leader ${leader}`));
    return new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + this.config.forwardTimeoutMs);
      p.client.propose({ command: toBuffer(command) }, new grpc.Metadata(), { deadline }, (err, res) => {
        if (err !== null) reject(err);
        else resolve(res);
      });
    });
  }

  /**
   * Forwards proposals to `leader` in one ProposeBatch call; resolves with one result per command,
   * in order. A leader that does not serve ProposeBatch (an older member during a rolling upgrade)
   * gets them one Propose call each. Rejects with the gRPC error when it cannot be reached.
   */
  async forwardProposeBatch(leader: NodeId, commands: readonly Uint8Array[]): Promise<pb.ProposeResponse[]> {
    const p = this.peers.get(leader);
    if (p === undefined) throw new Error(`no URL known for leader ${leader}`);
    if (!p.noProposeBatch) {
      try {
        return await this.callProposeBatch(p, commands);
      } catch (err) {
        if ((err as grpc.ServiceError).code !== grpc.status.UNIMPLEMENTED) throw err;
        p.noProposeBatch = true;
      }
    }
    return Promise.all(commands.map((c) => this.forwardPropose(leader, c)));
  }

  private callProposeBatch(p: Peer, commands: readonly Uint8Array[]): Promise<pb.ProposeResponse[]> {
    return new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + this.config.forwardTimeoutMs);
      const request = { commands: commands.map(toBuffer) };
      p.client.proposeBatch(request, new grpc.Metadata(), { deadline }, (err, res) => {
        if (err !== null) reject(err);
        else if (res.results.length !== commands.length) {
          reject(new Error(`leader answered ${res.results.length} results for ${commands.length} proposals`));
        } else resolve(res.results);
      });
    });
  }

  /** Forwards a membership operation to `leader`; rejects with the gRPC error when it cannot be reached. */
  forwardMembership(
    leader: NodeId,
    request: pb.MembershipRequest,
    timeoutMs: number,
  ): Promise<pb.MembershipResponse> {
    const p = this.peers.get(leader);
    if (p === undefined) return Promise.reject(new Error(`no URL known for leader ${leader.toString(16)}`));
    return new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + timeoutMs);
      p.client.changeMembership(request, new grpc.Metadata(), { deadline }, (err, res) => {
        if (err !== null) reject(err);
        else resolve(res);
      });
    });
  }

  /** Asks `peer` for the cluster's identity. */
  clusterInfo(peer: NodeId, timeoutMs: number): Promise<pb.ClusterInfoResponse> {
    const p = this.peers.get(peer);
    if (p === undefined) return Promise.reject(new Error(`no URL known for member ${peer.toString(16)}`));
    return new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + timeoutMs);
      p.client.clusterInfo({}, new grpc.Metadata(), { deadline }, (err, res) => {
        if (!p.closed) p.reachable(err === null);
        if (err !== null) reject(err);
        else resolve(res);
      });
    });
  }

  countSent(peer: NodeId, bytes: number): void {
    this.bytesSent.set(peer, (this.bytesSent.get(peer) ?? 0) + bytes);
  }

  /** Counted for known peers only: a sender's claimed ID must not grow the map (or the metric's labels). */
  private countReceived(peer: NodeId, bytes: number): void {
    if (this.peers.has(peer)) this.bytesReceived.set(peer, (this.bytesReceived.get(peer) ?? 0) + bytes);
  }

  /**
   * The peer service's definition, to serve with `serviceImplementation`: a received batch keeps
   * its size on the wire, for bytesReceived.
   */
  static serviceDefinition(): typeof pb.RaftPeerService {
    return {
      ...pb.RaftPeerService,
      sendMessages: {
        ...SEND_MESSAGES,
        requestDeserialize: (bytes: Buffer) => {
          const batch: ReceivedBatch = SEND_MESSAGES.requestDeserialize(bytes);
          batch.wireBytes = bytes.length;
          return batch;
        },
      },
    };
  }

  /** The server side: registers the peer service on a gRPC server owned by the caller. */
  serviceImplementation(): pb.RaftPeerServer {
    return {
      sendMessages: (call, callback) => {
        call.on("data", (batch: ReceivedBatch) => {
          if (this.stopped) return;
          const from = batch.messages[0]?.from;
          if (from !== undefined && batch.wireBytes !== undefined) this.countReceived(from, batch.wireBytes);
          for (const m of batch.messages) this.handler.onMessage(messageFromProto(m));
        });
        call.on("end", () => callback(null, {}));
        call.on("error", () => {
          /* the sender reconnects */
        });
      },
      installSnapshot: (call, callback) => this.receiveSnapshot(call, callback),
      changeMembership: (call, callback) => {
        const serve = this.handler.onForwardedMembership;
        if (serve === undefined || this.stopped) {
          callback(
            { code: grpc.status.UNAVAILABLE, details: "membership forwarding is not served here" },
            null,
          );
          return;
        }
        serve.call(this.handler, call.request).then(
          (res) => callback(null, res),
          (err: unknown) => callback({ code: grpc.status.INTERNAL, details: String(err) }, null),
        );
      },
      clusterInfo: (_call, callback) => {
        callback(
          null,
          this.handler.onClusterInfo?.() ?? {
            clusterId: 0n,
            memberId: this.selfId,
            leaderId: 0n,
            memberIds: [],
            term: 0n,
            configCurrent: false,
          },
        );
      },
      proposeBatch: (call, callback) => {
        const serve = this.handler.onForwardedProposeBatch;
        if (serve === undefined || this.stopped) {
          callback({ code: grpc.status.UNIMPLEMENTED, details: "ProposeBatch is not served here" }, null);
          return;
        }
        serve.call(this.handler, call.request.commands).then(
          (results) => callback(null, { results }),
          (err: unknown) => callback({ code: grpc.status.INTERNAL, details: String(err) }, null),
        );
      },
      propose: (call, callback) => {
        this.handler.onForwardedPropose(call.request.command).then(
          (res) => callback(null, res),
          (err: unknown) => callback({ code: grpc.status.INTERNAL, details: String(err) }, null),
        );
      },
    };
  }

  private receiveSnapshot(
    call: grpc.ServerReadableStream<pb.SnapshotChunk, pb.SnapshotAck>,
    callback: grpc.sendUnaryData<pb.SnapshotAck>,
  ): void {
    let head: pb.Message | undefined;
    let total = 0n;
    const parts: Buffer[] = [];
    // With `receiveSnapshotInto`, the data goes to a file as it arrives instead of to `parts`.
    let into: { path: string; fd: number } | null = null;
    let receivedBytes = 0;
    let refused = false;
    // From "end" on, the outcome is decided there (a cancellation reported after it changes nothing).
    let ending = false;
    const started = performance.now();
    const received = this.snapshotsReceived;
    // Counted from the first message on, for a known peer only (a claimed ID must not add labels).
    let from: NodeId | undefined;
    // Reset by every chunk; fires when none has come for snapshotIdleTimeoutMs.
    let idle: NodeJS.Timeout | null = null;
    let timedOut = false;
    const stillAlive = () => {
      if (idle !== null) clearTimeout(idle);
      idle = setTimeout(() => {
        if (ending) return;
        refused = true;
        timedOut = true;
        finish(false);
        callback({
          code: grpc.status.DEADLINE_EXCEEDED,
          details: `no snapshot chunk for ${this.config.snapshotIdleTimeoutMs} ms`,
        });
      }, this.config.snapshotIdleTimeoutMs);
      idle.unref();
    };
    stillAlive();
    const finish = (ok: boolean) => {
      if (idle !== null) clearTimeout(idle);
      idle = null;
      if (into !== null && !ok) {
        if (into.fd >= 0) closeQuietly(into.fd);
        rmSync(into.path, { force: true });
        into = null;
      }
      if (from === undefined) return;
      bump(received.inflight, from, -1);
      bump(ok ? received.success : received.failures, from);
      if (ok) this.onSnapshotTransferred?.("received", from, (performance.now() - started) / 1000);
      from = undefined;
    };
    call.on("data", (c: pb.SnapshotChunk) => {
      if (refused) return;
      stillAlive();
      try {
        if (c.message !== undefined) {
          head = c.message;
          total = c.totalBytes;
          if (from === undefined && this.peers.has(head.from)) {
            from = head.from;
            bump(received.inflight, from);
          }
          const path = this.config.receiveSnapshotInto?.(head.snapshot?.index ?? 0n) ?? null;
          if (path !== null && into === null) into = { path, fd: openSync(path, "wx") };
        } else if (into !== null) {
          for (let done = 0; done < c.data.length; ) done += writeSync(into.fd, c.data, done);
          receivedBytes += c.data.length;
        } else {
          parts.push(c.data);
          receivedBytes += c.data.length;
        }
      } catch {
        // The file could not be written (a full disk): the transfer fails, the leader tries again.
        refused = true;
        finish(false);
        stillAlive(); // answered at the stream's end, or when the sender goes silent
      }
    });
    call.on("end", () => {
      if (timedOut) return; // answered already
      ending = true;
      if (refused || head === undefined || BigInt(receivedBytes) !== total || this.stopped) {
        finish(false);
        callback(null, { ok: false });
        return;
      }
      const message = head;
      this.countReceived(message.from, receivedBytes);
      const deliver = (file: SnapshotDataFile | undefined) => {
        if (this.stopped) {
          finish(false);
          callback(null, { ok: false });
          return;
        }
        try {
          this.handler.onMessage(
            messageFromProto(message, file === undefined ? Buffer.concat(parts) : undefined, file),
          );
        } catch (err) {
          finish(false);
          throw err;
        }
        into = null; // the storage takes the file over (or removes it at its next start)
        finish(true);
        callback(null, { ok: true });
      };
      const file = into;
      if (file === null) {
        deliver(undefined);
        return;
      }
      // Durable before it is handed on: the storage records it as the snapshot without copying it.
      fdatasync(file.fd, (err) => {
        closeQuietly(file.fd);
        file.fd = -1; // closed: `finish` must not close the number again (it may be reused)
        if (err !== null) {
          finish(false);
          callback(null, { ok: false });
          return;
        }
        deliver({ path: file.path, bytes: receivedBytes });
      });
    });
    // A sender that goes away mid-transfer cancels the call, which grpc-js reports as "cancelled"
    // (and, in the cases seen, after an "end" too; it also reports it after a call that went
    // well, which `finish` has already counted). The sender reports the failure on its side.
    // Refused for good: an "end" after these must not deliver what is left (the file is gone).
    call.on("cancelled", () => {
      if (ending) return;
      refused = true;
      finish(false);
    });
    call.on("error", () => {
      if (ending) return;
      refused = true;
      finish(false);
    });
  }

  register(server: grpc.Server): void {
    server.addService(GrpcTransport.serviceDefinition(), this.serviceImplementation());
  }

  stop(): void {
    this.stopped = true;
    for (const p of this.peers.values()) p.close();
    this.peers.clear();
  }
}
