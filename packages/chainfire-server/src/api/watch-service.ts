// etcdserverpb.Watch: many watchers per bidirectional stream. The stream's own write buffer is the
// bound per stream: once grpc-js reports it full, the hub's deliveries are refused and those watchers
// fall back to catching up from storage when the stream drains.
import type { ServerDuplexStream } from "@grpc/grpc-js";
import { etcd, mvccpb } from "@photoncloud/chainfire-api";
import type { WatchDelivery, Watcher } from "../watch/watch-hub.js";
import { chainfireError } from "../errors.js";
import { type EtcdApiContext, responseHeader } from "./context.js";
import { grpcError } from "./grpc-util.js";
import { requiresLeader, watchForLeaderLoss } from "./require-leader.js";

type WatchCall = ServerDuplexStream<etcd.WatchRequest, etcd.WatchResponse>;

export interface WatchServiceOptions {
  /** How often watchers that asked for progress_notify get an empty response (etcd: 10 minutes). */
  progressIntervalMs: number;
}

export function watchHandlers(
  ctx: EtcdApiContext,
  options: WatchServiceOptions = { progressIntervalMs: 600_000 },
): etcd.WatchServer {
  return { watch: (call) => new WatchStream(ctx, call, options).start() };
}

class WatchStream {
  private readonly watchers = new Map<bigint, Watcher>();
  /**
   * Watchers that asked for progress_notify, each with whether it is due one at the next tick. As
   * etcd's stream, a watcher sent events since the last tick skips that tick's notification.
   */
  private readonly progressNotify = new Map<bigint, boolean>();
  private readonly fragment = new Set<bigint>();
  /**
   * Watchers the server canceled (compaction): as in etcd, their IDs stay taken until the client
   * cancels them, and that cancel is answered.
   */
  private readonly serverCanceled = new Set<bigint>();
  private nextId = 0n;
  private congested = false;
  /** A progress request waits until every watcher of the stream has caught up (see onRequest). */
  private progressWanted = false;
  private closed = false;
  private progressTimer: NodeJS.Timeout | null = null;
  private stopLeaderCheck: (() => void) | null = null;

  constructor(
    private readonly ctx: EtcdApiContext,
    private readonly call: WatchCall,
    private readonly options: WatchServiceOptions,
  ) {}

  start(): void {
    this.call.on("data", (req: etcd.WatchRequest) => this.onRequest(req));
    this.call.on("drain", () => {
      this.congested = false;
      this.ctx.hub.resume();
    });
    const close = () => this.close();
    // A client that ends its sending side keeps the stream and its watchers, as etcd keeps them
    // (grpc-gateway and tools such as grpcurl half-close after their requests): only a cancel,
    // a broken connection or the server's shutdown ends it.
    this.call.on("error", close);
    this.call.on("cancelled", close);
    this.call.on("close", close);
    // Open watch streams would hold a graceful shutdown until its deadline: end them first.
    void this.ctx.shuttingDown?.then(close);
    this.progressTimer = setInterval(() => this.sendProgress(), this.options.progressIntervalMs);
    this.progressTimer.unref();
    if (requiresLeader(this.call)) {
      this.stopLeaderCheck = watchForLeaderLoss(this.ctx, () => this.fail(chainfireError("NO_LEADER")));
    }
  }

  private onRequest(req: etcd.WatchRequest): void {
    if (this.closed) return;
    if (req.createRequest) this.create(req.createRequest);
    else if (req.cancelRequest) this.cancel(req.cancelRequest.watchId);
    else if (req.progressRequest) {
      // Answered addressed to no watcher (ID -1), as etcd, with a revision every watcher of the
      // stream has had all events up to: at once when all are synced, else once they are. (etcd
      // 3.4.23 answers at once, before the events a catching-up watcher still owes; later 3.4
      // releases wait as here.)
      this.progressWanted = true;
      this.answerProgress();
    }
  }

  private answerProgress(): void {
    if (!this.progressWanted || this.closed) return;
    for (const watcher of this.watchers.values()) if (!watcher.synced) return;
    this.progressWanted = false;
    this.write(this.response(-1n, this.ctx.store.currentRevision(), {}));
  }

  private create(request: etcd.WatchCreateRequest): void {
    // As etcd: an empty key is the smallest key, "\0" (alone, or the start of a range).
    const req = request.key.length === 0 ? { ...request, key: Buffer.from([0]) } : request;
    let id = req.watchId;
    // Refused as etcd refuses them: created and canceled at once, addressed to no watcher (ID -1).
    const refusal = emptyRange(req)
      ? "mvcc: watcher range is empty"
      : id !== 0n && this.taken(id)
        ? "mvcc: duplicate watch ID provided on the WatchStream"
        : null;
    if (refusal !== null) {
      this.write(
        this.response(-1n, this.ctx.store.currentRevision(), {
          created: true,
          canceled: true,
          cancelReason: refusal,
        }),
      );
      return;
    }
    if (id === 0n) {
      while (this.taken(this.nextId)) this.nextId++;
      id = this.nextId++;
    }
    const filters = new Set(req.filters);
    // The created response goes first, so it precedes any event of the new watcher.
    this.write(this.response(id, this.ctx.store.currentRevision(), { created: true }));
    const watcher = this.ctx.hub.watch(
      id,
      {
        key: req.key,
        rangeEnd: req.rangeEnd,
        startRevision: req.startRevision,
        prevKv: req.prevKv,
        noPut: filters.has(etcd.WatchCreateRequest_FilterType.NOPUT),
        noDelete: filters.has(etcd.WatchCreateRequest_FilterType.NODELETE),
      },
      (w, delivery) => this.deliver(w, delivery),
      { blocked: () => this.congested, synced: () => this.answerProgress() },
    );
    this.watchers.set(id, watcher);
    if (req.progressNotify) this.progressNotify.set(id, true);
    if (req.fragment) this.fragment.add(id);
  }

  private taken(id: bigint): boolean {
    return this.watchers.has(id) || this.serverCanceled.has(id);
  }

  private cancel(id: bigint): void {
    const watcher = this.watchers.get(id);
    if (watcher !== undefined) this.forget(watcher);
    else if (!this.serverCanceled.delete(id)) return;
    this.write(this.response(id, this.ctx.store.currentRevision(), { canceled: true }));
  }

  private forget(watcher: Watcher): void {
    this.ctx.hub.cancel(watcher);
    this.watchers.delete(watcher.id);
    this.progressNotify.delete(watcher.id);
    this.fragment.delete(watcher.id);
    this.answerProgress();
  }

  private deliver(watcher: Watcher, delivery: WatchDelivery): boolean {
    if (this.closed) return true;
    if (this.congested) return false;
    if (delivery.compactRevision !== undefined) {
      this.forget(watcher);
      this.serverCanceled.add(watcher.id);
      // etcd's cancellation for compaction carries no revision in its header.
      this.write(
        this.response(watcher.id, 0n, {
          canceled: true,
          compactRevision: delivery.compactRevision,
        }),
      );
      return true;
    }
    const parts = this.fragment.has(watcher.id)
      ? fragments(
          this.response(watcher.id, delivery.revision, {}),
          delivery.events,
          this.ctx.watchFragmentBytesMax,
        )
      : [delivery.events];
    parts.forEach((events, i) => {
      this.write(this.response(watcher.id, delivery.revision, { events, fragment: i < parts.length - 1 }));
    });
    if (delivery.events.length > 0 && this.progressNotify.get(watcher.id) === true) {
      this.progressNotify.set(watcher.id, false);
    }
    return true;
  }

  private sendProgress(): void {
    const current = this.ctx.store.currentRevision();
    for (const [id, due] of this.progressNotify) {
      const watcher = this.watchers.get(id);
      // Not for a watcher that starts past the current revision: its notification would go
      // below its own start.
      if (due && watcher?.synced && watcher.nextRevision <= current + 1n && !this.congested) {
        this.write(this.response(id, current, {}));
      }
      this.progressNotify.set(id, true);
    }
  }

  private response(id: bigint, revision: bigint, fields: Partial<etcd.WatchResponse>): etcd.WatchResponse {
    return {
      header: responseHeader(this.ctx, revision),
      watchId: id,
      created: false,
      canceled: false,
      compactRevision: 0n,
      cancelReason: "",
      fragment: false,
      events: [],
      ...fields,
    };
  }

  private write(response: etcd.WatchResponse): void {
    if (this.closed) return;
    if (!this.call.write(response)) this.congested = true;
  }

  private close(): void {
    if (!this.release()) return;
    this.call.end();
  }

  /** Ends the stream with `err`'s status, its watchers canceled. */
  private fail(err: Error): void {
    if (!this.release()) return;
    this.call.emit("error", grpcError(err));
  }

  /** Cancels every watcher and stops the timers; false when the stream was already closed. */
  private release(): boolean {
    if (this.closed) return false;
    this.closed = true;
    if (this.progressTimer !== null) clearInterval(this.progressTimer);
    this.stopLeaderCheck?.();
    for (const watcher of [...this.watchers.values()]) this.ctx.hub.cancel(watcher);
    this.watchers.clear();
    return true;
  }
}

/**
 * How a fragmented watcher's response is cut, as etcd cuts it: whole unless it is `bytesMax` or more
 * encoded and has more than one event; otherwise into responses each under `bytesMax` (measured
 * with the fragment flag set), filled in order, an event larger than that alone in its own.
 */
function fragments(empty: etcd.WatchResponse, events: mvccpb.Event[], bytesMax: number): mvccpb.Event[][] {
  if (events.length < 2) return [events];
  // Each event adds its encoding and the field's tag and length to the response.
  const sizes = events.map((event) => {
    const bytes = mvccpb.Event.encode(event).finish().length;
    return 1 + varintLength(bytes) + bytes;
  });
  const base = etcd.WatchResponse.encode({ ...empty, fragment: true }).finish().length;
  // The whole response carries no fragment flag: its field (two bytes) is left out.
  if (base - 2 + sizes.reduce((n, size) => n + size, 0) < bytesMax) return [events];
  const parts: mvccpb.Event[][] = [];
  let i = 0;
  while (i < events.length) {
    const part = [events[i]!];
    let size = base + sizes[i++]!;
    while (i < events.length && size + sizes[i]! < bytesMax) {
      part.push(events[i]!);
      size += sizes[i++]!;
    }
    parts.push(part);
  }
  return parts;
}

/** The bytes of a length's varint encoding. */
function varintLength(n: number): number {
  let bytes = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    bytes++;
  }
  return bytes;
}

/** A range end at or before the key (other than "\0", every key from it): a range nothing can match. */
function emptyRange(req: etcd.WatchCreateRequest): boolean {
  const end = req.rangeEnd;
  if (end.length === 0 || (end.length === 1 && end[0] === 0)) return false;
  const key = req.key.length === 0 ? Buffer.from([0]) : Buffer.from(req.key);
  return Buffer.compare(key, Buffer.from(end)) >= 0;
}
