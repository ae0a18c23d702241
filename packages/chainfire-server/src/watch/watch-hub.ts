// The watch hub: etcd's watchable store. Synced watchers receive events straight from apply; a
// watcher that starts in the past, or whose stream is congested, is "unsynced" and catches up from
// the stored revisions in bounded chunks, so a slow watcher costs storage reads, never unbounded memory.
import { mvccpb } from "@photoncloud/chainfire-api";
import { type KeyRange, keyRange } from "../mvcc/key-range.js";
import type { MvccStore } from "../mvcc/store.js";

export interface WatchSpec {
  key: Uint8Array;
  rangeEnd: Uint8Array;
  /** First revision to deliver; 0n means "from the next write". */
  startRevision: bigint;
  prevKv: boolean;
  noPut: boolean;
  noDelete: boolean;
}

/** What a watcher hands to its stream. */
export interface WatchDelivery {
  readonly events: mvccpb.Event[];
  /** The store revision the delivery is current to (the response header revision). */
  readonly revision: bigint;
  /** Set when the watcher is cancelled because its start revision was compacted. */
  readonly compactRevision?: bigint;
}

/** A stream's side: `trySend` returns false (and keeps nothing) when the stream is congested. */
export type WatchSink = (watcher: Watcher, delivery: WatchDelivery) => boolean;

export interface WatchHubOptions {
  /** Rows read per catch-up step for one watcher. */
  catchUpRowsMax: number;
  /** Delay between catch-up rounds while some watcher is unsynced. */
  catchUpIntervalMs: number;
}

/** What a watcher's owner tells the hub besides taking deliveries (see `WatchHub.watch`). */
export interface WatcherOwner {
  /**
   * True while the owner's stream cannot take a delivery: the hub then reads nothing for the
   * watcher until `resume()` (the stream drained), instead of reading history only to be refused.
   */
  blocked?(): boolean;
  /** Called when the watcher has caught up: it has had every event up to the current revision. */
  synced?(): void;
}

export class Watcher {
  synced = false;
  canceled = false;
  constructor(
    readonly id: bigint,
    readonly spec: WatchSpec,
    readonly range: KeyRange,
    /** The next revision this watcher has not yet been given. */
    public nextRevision: bigint,
    readonly sink: WatchSink,
    readonly owner: WatcherOwner = {},
  ) {}

  /** Applies the watcher's range and filters, and drops prev_kv unless asked for. */
  select(events: readonly mvccpb.Event[]): mvccpb.Event[] {
    const out: mvccpb.Event[] = [];
    for (const event of events) {
      const kv = event.kv!;
      if (kv.modRevision < this.nextRevision) continue;
      if (!matches(this.range, kv.key.toString("latin1"))) continue;
      if (event.type === mvccpb.Event_EventType.PUT && this.spec.noPut) continue;
      if (event.type === mvccpb.Event_EventType.DELETE && this.spec.noDelete) continue;
      out.push(this.spec.prevKv ? event : { type: event.type, kv, prevKv: undefined });
    }
    return out;
  }
}

function matches(range: KeyRange, key: string): boolean {
  if (range.single) return key === range.start;
  return key >= range.start && (range.end === null || key < range.end);
}

export class WatchHub {
  private readonly singleKey = new Map<string, Set<Watcher>>();
  private readonly ranged = new Set<Watcher>();
  private readonly unsynced = new Set<Watcher>();
  private catchUpTimer: NodeJS.Timeout | null = null;
  private readonly unsubscribe: () => void;
  private readonly unsubscribeRestore: () => void;
  /** The newest revision delivered to synced watchers (the point they are all current to). */
  private committedRevision = 0n;

  constructor(
    private readonly store: MvccStore,
    private readonly options: WatchHubOptions = { catchUpRowsMax: 1000, catchUpIntervalMs: 10 },
  ) {
    this.unsubscribe = store.subscribe((events, revision) => this.onCommit(events, revision));
    // A snapshot install skips the events in between: every watcher re-reads them from storage (or
    // is cancelled with the compact revision when they are gone).
    this.unsubscribeRestore = store.onRestore(() => {
      const all = [...this.ranged, ...[...this.singleKey.values()].flatMap((set) => [...set])];
      for (const w of all) {
        if (w.synced && w.nextRevision <= this.committedRevision)
          w.nextRevision = this.committedRevision + 1n;
        this.markUnsynced(w);
      }
    });
    this.committedRevision = store.currentRevision();
  }

  get watcherCount(): number {
    return this.ranged.size + [...this.singleKey.values()].reduce((n, set) => n + set.size, 0);
  }

  /** Watchers catching up from storage: started in the past, or refused by a congested stream. */
  get unsyncedCount(): number {
    return this.unsynced.size;
  }

  watch(id: bigint, spec: WatchSpec, sink: WatchSink, owner: WatcherOwner = {}): Watcher {
    const current = this.store.currentRevision();
    // 0 is "from now". A negative start is before any history: canceled as compacted, as etcd does.
    const start = spec.startRevision !== 0n ? spec.startRevision : current + 1n;
    const watcher = new Watcher(id, spec, keyRange(spec.key, spec.rangeEnd), start, sink, owner);
    if (watcher.range.single) {
      let set = this.singleKey.get(watcher.range.start);
      if (set === undefined) this.singleKey.set(watcher.range.start, (set = new Set()));
      set.add(watcher);
    } else {
      this.ranged.add(watcher);
    }
    if (start > current) watcher.synced = true;
    else this.markUnsynced(watcher);
    return watcher;
  }

  cancel(watcher: Watcher): void {
    watcher.canceled = true;
    this.unsynced.delete(watcher);
    if (watcher.range.single) {
      const set = this.singleKey.get(watcher.range.start);
      set?.delete(watcher);
      if (set?.size === 0) this.singleKey.delete(watcher.range.start);
    } else {
      this.ranged.delete(watcher);
    }
  }

  /** Synced watchers, for progress notifications. */
  *syncedWatchers(): Generator<Watcher> {
    for (const set of this.singleKey.values()) for (const w of set) if (w.synced) yield w;
    for (const w of this.ranged) if (w.synced) yield w;
  }

  /** A congested stream drained: retry its watchers soon. */
  resume(): void {
    if (this.unsynced.size > 0) this.scheduleCatchUp(0);
  }

  close(): void {
    this.unsubscribe();
    this.unsubscribeRestore();
    if (this.catchUpTimer !== null) clearTimeout(this.catchUpTimer);
    this.catchUpTimer = null;
  }

  private markUnsynced(watcher: Watcher): void {
    watcher.synced = false;
    this.unsynced.add(watcher);
    this.scheduleCatchUp(0);
  }

  private onCommit(events: mvccpb.Event[], revision: bigint): void {
    this.committedRevision = revision;
    const touched = new Set<Watcher>();
    for (const event of events) {
      const set = this.singleKey.get(event.kv!.key.toString("latin1"));
      if (set !== undefined) for (const w of set) touched.add(w);
    }
    for (const w of this.ranged) touched.add(w);
    for (const watcher of touched) {
      if (!watcher.synced) continue;
      const selected = watcher.select(events);
      if (selected.length === 0) {
        // Never backwards: a watcher asked to start past this revision waits for its start.
        if (watcher.nextRevision <= revision) watcher.nextRevision = revision + 1n;
        continue;
      }
      // As etcd, a synced watcher gets one response per revision, whose header is that revision
      // (several revisions share one response only when a watcher catches up from history).
      let from = 0;
      while (from < selected.length) {
        const at = selected[from]!.kv!.modRevision;
        let to = from + 1;
        while (to < selected.length && selected[to]!.kv!.modRevision === at) to++;
        const group = from === 0 && to === selected.length ? selected : selected.slice(from, to);
        if (!watcher.sink(watcher, { events: group, revision: at })) {
          // A synced watcher has had everything before this delivery; resuming from here (not from
          // a stale position on a quiet key) also keeps it clear of an unrelated compaction.
          watcher.nextRevision = at;
          this.markUnsynced(watcher);
          break;
        }
        from = to;
      }
      if (watcher.synced) watcher.nextRevision = revision + 1n;
    }
  }

  private scheduleCatchUp(delayMs: number): void {
    if (this.catchUpTimer !== null) return;
    this.catchUpTimer = setTimeout(() => {
      this.catchUpTimer = null;
      this.catchUp();
    }, delayMs);
  }

  /**
   * One round: every unsynced watcher whose stream can take a delivery reads one bounded chunk of
   * history and sends it. The others wait for `resume()`: a round is scheduled again only while
   * some watcher can go on.
   */
  private catchUp(): void {
    const current = this.store.currentRevision();
    const compacted = this.store.compactRevision();
    let more = false;
    for (const watcher of [...this.unsynced]) {
      if (watcher.owner.blocked?.() === true) continue;
      more = true;
      if (watcher.nextRevision < compacted) {
        this.unsynced.delete(watcher);
        if (watcher.sink(watcher, { events: [], revision: current, compactRevision: compacted })) {
          this.cancel(watcher);
        } else {
          this.unsynced.add(watcher);
        }
        continue;
      }
      this.catchUpOne(watcher, current);
    }
    if (more && this.unsynced.size > 0) this.scheduleCatchUp(this.options.catchUpIntervalMs);
  }

  private catchUpOne(watcher: Watcher, current: bigint): void {
    if (watcher.nextRevision > current) {
      this.markSynced(watcher);
      return;
    }
    const read = this.store.eventsBetween(
      watcher.range,
      watcher.nextRevision,
      current,
      this.options.catchUpRowsMax,
    );
    const selected = watcher.select(read.events);
    if (selected.length > 0 && !watcher.sink(watcher, { events: selected, revision: current })) return;
    watcher.nextRevision = read.lastRevision + 1n;
    if (watcher.nextRevision > current) this.markSynced(watcher);
  }

  private markSynced(watcher: Watcher): void {
    watcher.synced = true;
    this.unsynced.delete(watcher);
    watcher.owner.synced?.();
  }
}
