// chainfire's MVCC store: etcd's data model (global revision; per key create/mod revision, version,
// lease; history until compaction) as a Raft StateMachine. Writes arrive only as encoded MvccCommands
// through applyBatch (one SQLite transaction per batch, applied index in the same transaction); reads
// are served from the in-memory key index, touching SQLite only for values of older revisions.
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { setImmediate } from "node:timers/promises";
import { crc32 } from "node:zlib";
import { command, etcd, mvccpb } from "@photoncloud/chainfire-api";
import crc32c from "crc-32/crc32c.js";
import { reusingEncoder } from "@photoncloud/daemon";
import {
  type ApplyEntry,
  DatabaseStillOpenError,
  discardInterruptedReplace,
  renameOverDatabase,
  replaceDatabaseFile,
  replaceDatabaseFileFrom,
  rollbackJournalCopy,
  type SnapshotFileJob,
  type SnapshotJob,
  SnapshotWorker,
  type StateMachine,
} from "@photoncloud/raft";
import { ChainfireError, chainfireError } from "../errors.js";
import { Backend, removeDefragCopy, type Row } from "./backend.js";
import {
  type ClientImage,
  clientImagePath,
  fileImage,
  memoryImage,
  removeClientImage,
  removeLeftClientImages,
} from "./client-image.js";
import { KeyIndex, KeyRecord } from "./key-index.js";
import { type KeyRange, keyRange, keyString } from "./key-range.js";
import { Lessor, MAX_LEASE_TTL_SECONDS } from "./lessor.js";
import { EMPTY, header, tombstone } from "./messages.js";
import { requestText } from "./request-text.js";
import { checkDeleteRange, checkPut, checkTxn, DEFAULT_MAX_TXN_OPS } from "./txn-check.js";

export interface MvccStoreOptions {
  /** SQLite file, or ":memory:". */
  path: string;
  /**
   * NOSPACE is raised when the database would grow past this (etcd's --quota-backend-bytes). As
   * etcd's: 0n (or absent) is the default of 2 GiB, and a negative quota is none.
   */
  quotaBackendBytes?: bigint;
  maxTxnOps?: number;
  /** Shorter TTLs are raised to it (see minLeaseTtlSeconds in lessor.ts); 2 s, etcd's at its default timing. */
  minLeaseTtlSeconds?: bigint;
  leaseCheckpointIntervalMs?: number;
  /** The clock lease expiry is counted on (default: the monotonic one, see lessor.ts). */
  leaseClockMs?: () => number;
  /** How long applied writes may wait in the backend's open transaction (see Backend). */
  backendBatchIntervalMs?: number;
  /** How many row writes the backend's open transaction may hold (see Backend). */
  backendBatchLimit?: number;
  /** Checkpoint the database's WAL from a worker thread (see WalCheckpointer); the daemon does. */
  backgroundCheckpoints?: boolean;
  /** An apply at least this long is reported to onSlowApply (default SLOW_APPLY_MS). */
  slowApplyMs?: number;
}

/** Every applied entry's result is encoded through one reused writer (see reusingEncoder). */
const encodeResult = reusingEncoder(command.MvccResult);
const encodeKeyValue = reusingEncoder(mvccpb.KeyValue);

/** Where the snapshot worker finds the applied index in the pinned view. */
const APPLIED_SQL = "SELECT value AS idx FROM meta WHERE name = 'applied_index'";

/** Receives the events of each applied batch, in revision order, once the batch is applied. */
export type CommitListener = (events: mvccpb.Event[], revision: bigint) => void;

/** One revision being written: every change in it shares `revision`, sub-revisions count up. */
interface WriteContext {
  readonly revision: bigint;
  sub: number;
  readonly events: mvccpb.Event[];
  readonly timestampMs: number;
}

/** The branch choices of a txn, evaluated against the state before it, as etcd does. */
interface TxnPath {
  succeeded: boolean;
  nested: TxnPath[];
}

const DEFAULT_QUOTA_BYTES = 2n * 1024n * 1024n * 1024n;
const INT63_MASK = (1n << 63n) - 1n;
/** The result of an entry nobody on this member waits for (see ApplyEntry.resultWanted). */
const NO_RESULT = new Uint8Array(0);

/** By default, an apply at least this long is a slow one (etcd's warnApplyDuration). */
export const SLOW_APPLY_MS = 100;

export class MvccStore implements StateMachine {
  private backend: Backend;
  private readonly index = new KeyIndex();
  readonly lessor: Lessor;
  private revision = 0n;
  /** The last compaction's revision; -1 until the first, as in etcd (so revision 0 can be compacted). */
  private compacted = -1n;
  private applied = 0n;
  private readonly alarmSet = new Map<string, etcd.AlarmMember>();
  private readonly listeners = new Set<CommitListener>();
  private readonly restoreListeners = new Set<() => void>();
  private batchEvents: mvccpb.Event[] = [];
  private sizeBytesCached: bigint | null = null;
  readonly quotaBackendBytes: bigint;
  readonly maxTxnOps: number;
  /** Takes snapshots off the event loop once `startSnapshotWorker` was called (file stores only). */
  private readonly snapshots: SnapshotWorker | null;
  /**
   * Makes the images clients ask for (Maintenance Snapshot and Hash), one at a time, started by
   * the first (file stores only). A worker of their own: the Raft layer's snapshots never wait
   * behind them.
   */
  private readonly clientImages: SnapshotWorker | null;
  private closed = false;
  /** The defragment running, which later calls join. */
  private defragmenting: Promise<void> | null = null;
  /** Counts the compactions and restores, which remove history (see `keptAt`). */
  private historyEpoch = 0;
  /**
   * Operations seen by this member, for metrics (etcd's etcd_mvcc_*_total), counted as etcd's
   * store counts them: every range, put and delete its requests make of the store (a compare is a
   * range; so is the read a put or delete makes for prev_kv, ignore_value or ignore_lease; a lease
   * revoked deletes each of its keys), and a txn for each read or write transaction that made more
   * than one of them (etcd runs a Txn's compares in one and its operations in another).
   */
  readonly stats = { puts: 0, deletes: 0, ranges: 0, txns: 0, slowApplies: 0 };
  /** Operations the store transaction running now has made (see `opsEnd`). */
  private txnOps = 0;
  /** Keys with a current value (etcd_debugging_mvcc_keys_total). */
  private liveKeys = 0;
  /**
   * Told how long each COMMIT of the backend took, in seconds: applied batches are committed
   * together, on the batch interval or limit, as etcd's backend commits (see Backend.transaction).
   */
  onCommit: ((seconds: number) => void) | null = null;
  /**
   * Told of each request whose apply took slowApplyMs or more (counted in stats.slowApplies), as
   * etcd warns "apply request took too long": `request` describes it without values.
   */
  onSlowApply: ((request: string, tookMs: number) => void) | null = null;

  private readonly slowApplyMs: number;

  constructor(private readonly options: MvccStoreOptions) {
    this.slowApplyMs = options.slowApplyMs ?? SLOW_APPLY_MS;
    const quota = options.quotaBackendBytes ?? 0n;
    this.quotaBackendBytes = quota === 0n ? DEFAULT_QUOTA_BYTES : quota;
    this.maxTxnOps = options.maxTxnOps ?? DEFAULT_MAX_TXN_OPS;
    this.lessor = new Lessor({
      minTtlSeconds: options.minLeaseTtlSeconds ?? 2n,
      checkpointIntervalMs: options.leaseCheckpointIntervalMs ?? 5 * 60_000,
      ...(options.leaseClockMs === undefined ? {} : { clockMs: options.leaseClockMs }),
    });
    // A restore a crash interrupted leaves no trustworthy file: the store starts empty and the Raft
    // layer installs its stored snapshot again (see discardInterruptedReplace).
    if (options.path !== ":memory:") {
      discardInterruptedReplace(options.path);
      // A defragmented copy a crash left unfinished: the file itself was never replaced by it.
      removeDefragCopy(`${options.path}${DEFRAG_SUFFIX}`);
      removeLeftClientImages(options.path);
    }
    this.backend = this.openBackend(options.path);
    const worker = () =>
      options.path === ":memory:"
        ? null
        : new SnapshotWorker({ path: options.path, appliedSql: APPLIED_SQL });
    this.snapshots = worker();
    this.clientImages = worker();
    this.load();
  }

  // ---- StateMachine -------------------------------------------------------------------------------

  applyBatch(entries: readonly ApplyEntry[]): Uint8Array[] {
    this.batchEvents = [];
    const results = this.backend.transaction(() => {
      const out = entries.map((entry) => this.applyEntry(entry));
      const last = entries[entries.length - 1];
      if (last !== undefined) this.applied = last.index;
      this.backend.setMetaValue("applied_index", this.applied);
      this.backend.setMetaValue("current_revision", this.revision);
      this.backend.setMetaValue(COMPACTED_META, this.compacted);
      return out;
    });
    const events = this.batchEvents;
    this.batchEvents = [];
    this.sizeBytesCached = null;
    if (events.length > 0) for (const listener of this.listeners) listener(events, this.revision);
    return results;
  }

  appliedIndex(): bigint {
    return this.applied;
  }

  private openBackend(source: string | Buffer): Backend {
    const backend = new Backend(
      source,
      this.options.backendBatchIntervalMs,
      this.options.backendBatchLimit,
      this.options.backgroundCheckpoints,
    );
    backend.onCommit = (seconds) => this.onCommit?.(seconds);
    return backend;
  }

  snapshot(): Uint8Array {
    return this.backend.serialize();
  }

  /**
   * Starts the thread that takes snapshots off the event loop (see `beginSnapshot`). Serializing a
   * store of tens of megabytes takes hundreds of milliseconds, long enough to stall every request
   * on this member and, on a leader, to let followers start an election.
   */
  async startSnapshotWorker(): Promise<void> {
    await this.snapshots?.start();
  }

  /** Whether `beginSnapshot` hands the work to the worker (it is running). */
  get snapshotsOffLoop(): boolean {
    return this.snapshots?.isReady === true;
  }

  /**
   * A snapshot at the applied index, produced off the event loop: the open backend transaction is
   * committed, the worker's own connection pins a read view of the file (this call blocks only
   * until it has), and it serializes that view while later entries are applied here. Without a
   * running worker the snapshot is taken here and now.
   */
  beginSnapshot(): SnapshotJob {
    this.backend.commit();
    const job = this.snapshotsOffLoop ? this.snapshots?.begin(this.applied) : undefined;
    return job ?? { index: this.applied, image: Promise.resolve(this.snapshot()) };
  }

  /**
   * `beginSnapshot` with the image written to the new file `file` by the worker (SQLite's online
   * backup of the pinned view), for a store of any size; undefined while the worker starts (the
   * first call starts it), so that no image is made on the event loop while a worker can make it.
   */
  beginSnapshotFile(file: string): SnapshotFileJob | undefined {
    // Without a worker that can run (a store in memory, or one whose worker could not open the
    // file: the daemon then logs that snapshots are taken on the event loop), the image is made here.
    if (this.snapshots === null || this.snapshots.startFailed) {
      writeFileSync(file, this.snapshot());
      return { index: this.applied, written: Promise.resolve() };
    }
    this.backend.commit();
    return this.snapshots.beginFile(this.applied, file);
  }

  /**
   * The store's file is the snapshot the Raft layer records every interval, as etcd's backend is
   * (see StateMachine.persist): the open write transaction is committed and the file synced off the
   * event loop. An image (`beginSnapshot`) is made only for a follower that needs one.
   */
  persist(): Promise<void> | null {
    return this.backend.sync();
  }

  restore(image: Uint8Array, index: bigint): void {
    if (this.options.path === ":memory:") {
      this.backend.close();
      this.backend = this.openBackend(rollbackJournalCopy(image));
    } else {
      if (!this.closeFile()) throw new DatabaseStillOpenError(this.options.path);
      // Never a torn file or the new image with the old WAL (see replaceDatabaseFile).
      replaceDatabaseFile(this.options.path, image);
      this.reopenFile(this.options.path);
    }
    this.restored(index);
  }

  /** `restore` from a snapshot the Raft layer holds in a file: copied a piece at a time. */
  restoreFromFile(source: string, offset: number, index: bigint): void {
    if (this.options.path === ":memory:") {
      this.restore(readFileSync(source).subarray(offset), index);
      return;
    }
    if (!this.closeFile()) throw new DatabaseStillOpenError(this.options.path);
    replaceDatabaseFileFrom(this.options.path, source, offset);
    this.reopenFile(this.options.path);
    this.restored(index);
  }

  private restored(index: bigint): void {
    this.backend.setMetaValue("applied_index", index);
    this.load();
    for (const listener of this.restoreListeners) listener();
  }

  /**
   * Closes every connection to the store's file before it is replaced (a restore, a defragment):
   * the snapshot workers', the background checkpointer's and the writer's. Whether all closed.
   */
  private closeFile(): boolean {
    const workerClosed = this.snapshots?.suspend() ?? true;
    const imagesClosed = this.clientImages?.suspend() ?? true;
    const backendClosed = this.backend.close();
    return workerClosed && imagesClosed && backendClosed;
  }

  /** Opens the file again after `closeFile`, and the snapshot workers it closed. */
  private reopenFile(path: string): void {
    this.backend = this.openBackend(path);
    this.sizeBytesCached = null;
    this.snapshots?.resume();
    this.clientImages?.resume();
  }

  close(): void {
    this.closed = true;
    this.snapshots?.close();
    this.clientImages?.close();
    this.backend.close();
  }

  // ---- observers ----------------------------------------------------------------------------------

  subscribe(listener: CommitListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Called after `restore` replaced the whole state (watchers must re-read from storage). */
  onRestore(listener: () => void): () => void {
    this.restoreListeners.add(listener);
    return () => this.restoreListeners.delete(listener);
  }

  currentRevision(): bigint {
    return this.revision;
  }

  compactRevision(): bigint {
    return this.compacted;
  }

  /** Keys that have a value now. */
  keyCount(): number {
    return this.liveKeys;
  }

  dbSizeBytes(): bigint {
    return this.backend.sizeBytes();
  }

  dbSizeInUseBytes(): bigint {
    return this.backend.sizeInUseBytes();
  }

  /** The active alarms: every one, or only those of `type` (etcd's AlarmStore.Get). */
  alarms(type: etcd.AlarmType = etcd.AlarmType.NONE): etcd.AlarmMember[] {
    const all = [...this.alarmSet.values()];
    return type === etcd.AlarmType.NONE ? all : all.filter((a) => a.alarm === type);
  }

  /** Whether a write of about `requestBytes` fits under the quota (etcd's quota check before proposing). */
  quotaAvailable(requestBytes: number): boolean {
    if (this.quotaBackendBytes < 0n) return true;
    // The size is read once per applied batch: a PRAGMA per request costs more than the put itself.
    this.sizeBytesCached ??= this.backend.sizeBytes();
    // As etcd's backendQuota.Available: strictly under the quota.
    return this.sizeBytesCached + BigInt(requestBytes) < this.quotaBackendBytes;
  }

  private hasAlarm(type: etcd.AlarmType): boolean {
    for (const alarm of this.alarmSet.values()) if (alarm.alarm === type) return true;
    return false;
  }

  private noSpace(): boolean {
    return this.hasAlarm(etcd.AlarmType.NOSPACE);
  }

  // ---- reads --------------------------------------------------------------------------------------

  /** Range as of now (or `req.revision`), with every RangeRequest field honoured as etcd does. */
  range(req: etcd.RangeRequest): etcd.RangeResponse {
    return this.rangeAt(req, this.revision);
  }

  private rangeAt(req: etcd.RangeRequest, current: bigint): etcd.RangeResponse {
    if (req.key.length === 0) throw chainfireError("EMPTY_KEY");
    this.counted("ranges");
    const revision = req.revision > 0n ? req.revision : current;
    if (revision > current) throw chainfireError("FUTURE_REV");
    if (revision < this.compacted) throw chainfireError("COMPACTED");
    const filtered =
      req.minModRevision !== 0n ||
      req.maxModRevision !== 0n ||
      req.minCreateRevision !== 0n ||
      req.maxCreateRevision !== 0n;
    const ordered = req.sortOrder !== etcd.RangeRequest_SortOrder.NONE;
    const sorted = ordered || req.sortTarget !== 0;
    // Like etcd: fetch one past the limit to learn `more`, or everything when an order is asked for
    // or filtering. A sort target without an order sorts only the keys fetched in key order.
    const fetch = req.limit > 0n && !ordered && !filtered ? Number(req.limit) + 1 : Number.POSITIVE_INFINITY;
    let kvs: mvccpb.KeyValue[] = [];
    let count = 0;
    for (const record of this.index.scan(keyRange(req.key, req.rangeEnd))) {
      if (!this.existsAt(record, revision)) continue;
      count++;
      if (!req.countOnly && kvs.length < fetch) kvs.push(this.valueAt(record, revision)!);
    }
    if (filtered) kvs = kvs.filter((kv) => passesFilters(req, kv));
    if (sorted) kvs = sortKvs(kvs, req);
    let more = false;
    if (req.limit > 0n && kvs.length > Number(req.limit)) {
      kvs = kvs.slice(0, Number(req.limit));
      more = true;
    }
    if (req.keysOnly) kvs = kvs.map((kv) => ({ ...kv, value: EMPTY }));
    return { header: header(current), kvs, more, count: BigInt(count) };
  }

  private existsAt(record: KeyRecord, revision: bigint): boolean {
    const last = record.length - 1;
    if (last >= 0 && record.main(last) <= revision) return record.current !== null;
    const at = record.indexAt(revision);
    return at >= 0 && !record.tombstone(at);
  }

  /** The key's value visible at `revision`, or null. */
  private valueAt(record: KeyRecord, revision: bigint): mvccpb.KeyValue | null {
    const last = record.length - 1;
    if (last >= 0 && record.main(last) <= revision) return record.current;
    const at = record.indexAt(revision);
    if (at < 0 || record.tombstone(at)) return null;
    const row = this.backend.row(record.main(at), record.sub(at));
    return row === undefined ? null : kvFromRow(row);
  }

  /**
   * A watch event's prev_kv, as etcd gives it: the key's value at the revision before the event's
   * (none when that revision is compacted, where etcd's read fails), and none for a creation (a put
   * whose create and mod revisions are the event's). So when a txn puts a key and then deletes it (a
   * put in one nested txn, the delete in a later one: etcd's duplicate-key check allows it), the
   * delete's prev_kv is the value from before the txn.
   */
  private eventPrevKv(key: string, kv: mvccpb.KeyValue, deleted: boolean): mvccpb.KeyValue | undefined {
    if (!deleted && kv.createRevision === kv.modRevision) return undefined;
    const before = kv.modRevision - 1n;
    const record = this.index.get(key);
    if (record === undefined || before < this.compacted) return undefined;
    return this.valueAt(record, before) ?? undefined;
  }

  /**
   * Stored events with fromRevision <= revision <= toRevision in `range`, in order, reading at most
   * `rowLimit` rows; returns the events and the last revision fully read (watch catch-up).
   */
  eventsBetween(
    range: KeyRange,
    fromRevision: bigint,
    toRevision: bigint,
    rowLimit: number,
  ): { events: mvccpb.Event[]; lastRevision: bigint } {
    let rows = this.backend.rowsBetween(fromRevision, toRevision, rowLimit + 1);
    let lastRevision = toRevision;
    if (rows.length > rowLimit && rows[rowLimit]!.main === rows[0]!.main) {
      // One revision larger than the chunk: read it whole, or the reader would never advance.
      lastRevision = rows[0]!.main;
      rows = this.backend.rowsBetween(lastRevision, lastRevision, Number.MAX_SAFE_INTEGER);
    } else if (rows.length > rowLimit) {
      // Stop at a revision boundary so one revision's events are never split between reads.
      const cut = rows[rowLimit]!.main;
      lastRevision = cut - 1n;
      while (rows.length > 0 && rows[rows.length - 1]!.main >= cut) rows.pop();
    }
    const events: mvccpb.Event[] = [];
    for (const row of rows) {
      const key = row.key.toString("latin1");
      if (!rangeHas(range, key)) continue;
      const deleted = row.tombstone !== 0n;
      const kv = deleted ? tombstone(Buffer.from(row.key), row.main) : kvFromRow(row);
      const type = deleted ? mvccpb.Event_EventType.DELETE : mvccpb.Event_EventType.PUT;
      events.push({ type, kv, prevKv: this.eventPrevKv(key, kv, deleted) });
    }
    return { events, lastRevision };
  }

  /** A txn without writes, served as a read (etcd serves read-only txns without a proposal). */
  readTxn(req: etcd.TxnRequest): etcd.TxnResponse {
    checkTxn(req, this.maxTxnOps);
    if (!isReadOnlyTxn(req)) throw chainfireError("INVALID_REQUEST");
    const ctx: WriteContext = { revision: this.revision + 1n, sub: 0, events: [], timestampMs: 0 };
    // One store transaction reads the compares and runs the operations, as etcd's does.
    this.txnOps = 0;
    const path = this.txnPath(req);
    this.checkTxnRanges(req, path);
    const response = this.executeTxn(ctx, req, path);
    this.opsEnd();
    response.header = header(this.revision);
    return response;
  }

  /**
   * Rewrites the database file to release free pages (etcd's defragment; local, not replicated).
   * The rewrite runs off the event loop (see Backend.startDefragCopy) while this member goes on
   * applying and serving; only the swap of the files is done here, with every connection to the
   * file closed as for a restore. Concurrent calls share one rewrite. An in-memory store is
   * vacuumed in place.
   */
  defragment(): Promise<void> {
    if (this.options.path === ":memory:") {
      this.backend.vacuum();
      return Promise.resolve();
    }
    this.defragmenting ??= this.defragmentFile(this.options.path).finally(() => {
      this.defragmenting = null;
    });
    return this.defragmenting;
  }

  private async defragmentFile(path: string): Promise<void> {
    const target = `${path}${DEFRAG_SUFFIX}`;
    const backend = this.backend;
    try {
      await backend.startDefragCopy(target);
    } catch (err) {
      if (this.closed || this.backend !== backend) throw chainfireError("STOPPED");
      throw err;
    }
    // The snapshot workers are closed for the swap: first let them finish the images they are
    // making (writes go on being recorded meanwhile), so closing them does not wait on one.
    for (;;) {
      if (this.closed || this.backend !== backend) {
        // Closed, or replaced by a restore, since the copy began: the copy is of a file that is gone.
        backend.dropDefragCopy(target);
        throw chainfireError("STOPPED");
      }
      if (this.snapshots?.busy === true) await this.snapshots.whenIdle();
      else if (this.clientImages?.busy === true) await this.clientImages.whenIdle();
      else break;
    }
    // From here to the swap nothing is awaited: no write can land between the copy's last
    // replayed one and the swap.
    backend.finishDefragCopy(target);
    let replaced = false;
    try {
      // The last connection to close copies the WAL into the file and removes it. A WAL still
      // there would be applied to the copy at the next open: keep the old file then.
      const allClosed = this.closeFile();
      const walLeft = existsSync(`${path}-wal`) && statSync(`${path}-wal`).size > 0;
      if (allClosed && !walLeft) {
        renameOverDatabase(target, path);
        replaced = true;
      }
    } finally {
      if (!replaced) removeDefragCopy(target);
      this.reopenFile(path);
    }
    if (!replaced) throw new DatabaseStillOpenError(path);
  }

  /**
   * etcd's HashKV, computed as etcd 3.4 computes it so the same history hashes the same in both:
   * CRC-32C over the name of etcd's key bucket, then each stored revision up to `revision` (0n =
   * newest) in revision order, as etcd's revision key (main, '_', sub, and 't' for a deletion) and
   * the entry as an mvccpb.KeyValue. Of the revisions at or below the compaction, only those still
   * visible at `revision` count, which makes the hash independent of how far a member has got
   * with removing compacted history.
   */
  async hashKV(revision: bigint): Promise<{ hash: number; revision: bigint; compactRevision: bigint }> {
    // As etcd's HashByRev: the compaction revision itself is refused too (its rows below are gone).
    if (revision > 0n && revision <= this.compacted) throw chainfireError("COMPACTED");
    const current = this.revision;
    // As etcd: only 0 means "now"; a negative revision holds no row, so only the bucket is hashed.
    if (revision < 0n)
      return { hash: crc32c.buf(KEY_BUCKET) >>> 0, revision: current, compactRevision: this.compacted };
    const upTo = revision > 0n ? revision : current;
    if (upTo > current) throw chainfireError("FUTURE_REV");
    // etcd counts a revision at or below the compaction only while it is still the one visible
    // at `upTo` (all of them when no key is visible there): that set is read from the index first.
    let keep: KeptRevisions;
    for (;;) {
      const epoch = this.historyEpoch;
      keep = await this.keptAt(upTo);
      if (this.closed) throw chainfireError("STOPPED");
      if (this.historyEpoch === epoch) break;
      // Compacted (or restored) since: read the index again, or refuse as etcd would now.
      if (upTo <= this.compacted) throw chainfireError("COMPACTED");
    }
    const compacted = this.compacted;
    // Pinned in the turn that checked `keep` is current: later writes and compactions reach
    // neither. The rows are read a chunk per event-loop turn so a large history does not stall
    // this member.
    const rows = this.backend.pinRows(upTo);
    let hash = crc32c.buf(KEY_BUCKET);
    try {
      for (let chunk = rows.next(HASH_CHUNK_ROWS); chunk.length > 0; chunk = rows.next(HASH_CHUNK_ROWS)) {
        for (const row of chunk) {
          if (row.main <= compacted && keep.any && !isKept(keep, row)) continue;
          const deleted = row.tombstone !== 0n;
          hash = crc32c.buf(revisionKey(row.main, row.sub, deleted), hash);
          const kv = deleted ? { ...EMPTY_KV, key: row.key } : kvFromRow(row);
          hash = crc32c.buf(encodeKeyValue(kv), hash);
        }
        await setImmediate();
      }
      // Closed under the hash: the store was closed or replaced by a restore.
      if (!rows.complete) throw chainfireError("STOPPED");
    } finally {
      rows.close();
    }
    return { hash: hash >>> 0, revision: current, compactRevision: compacted };
  }

  /**
   * For HashKV: the revision visible at `upTo` of each key that has one at or below the
   * compaction (etcd's `Keep`), and whether any key is visible at `upTo`. Read a chunk of keys per
   * event-loop turn. Writes meanwhile only add revisions above `upTo`, which change no answer; a
   * compaction or a restore meanwhile may drop some: the reading stops, and the caller, which
   * sees `historyEpoch` moved, reads again. Empty when nothing was compacted.
   */
  private async keptAt(upTo: bigint): Promise<KeptRevisions> {
    const compacted = this.compacted;
    const epoch = this.historyEpoch;
    const keep: KeptRevisions = { main: new Map(), sub: new Map(), any: false };
    if (compacted < 0n) return keep;
    const records = [...this.index.all()];
    for (let i = 0; i < records.length; i++) {
      if (i % HASH_CHUNK_KEYS === HASH_CHUNK_KEYS - 1) {
        await setImmediate();
        if (this.historyEpoch !== epoch) break;
      }
      const record = records[i]!;
      const at = record.indexAt(upTo);
      if (at < 0 || record.tombstone(at)) continue;
      keep.any = true;
      if (record.main(at) > compacted) continue;
      keep.main.set(record.key, record.main(at));
      keep.sub.set(record.key, record.sub(at));
    }
    return keep;
  }

  /**
   * CRC-32 over the whole store image (etcd's Hash covers the whole backend), with the image made
   * off the event loop as a Raft snapshot's is (see `beginSnapshot`), and the revision it holds.
   * The image is read a piece per turn of the event loop.
   */
  async hash(): Promise<{ hash: number; revision: bigint }> {
    const image = await this.clientImage();
    try {
      let hash = 0;
      for (const piece of image.pieces(HASH_PIECE_BYTES)) {
        hash = crc32(piece, hash);
        await setImmediate();
      }
      return { hash: hash >>> 0, revision: image.revision };
    } finally {
      image.release();
    }
  }

  /**
   * An image of the store for a client (Maintenance Snapshot and Hash), written to a file beside
   * the store by a worker of its own (SQLite's online backup of a view pinned at the applied
   * index), so that neither the event loop nor the member's memory carries it. It waits for that
   * worker to finish the client images it is making, so that pinning this one never blocks the
   * event loop behind them, and reports the revision the image holds. The caller releases the
   * image. Failures are etcd's "server stopped" (the store closed) or "request timed out".
   */
  async clientImage(): Promise<ClientImage> {
    const worker = this.clientImages;
    if (worker === null) return memoryImage(this.snapshot(), this.revision);
    let job: SnapshotFileJob | undefined;
    let revision = this.revision;
    const file = clientImagePath(this.options.path);
    // `beginFile` answers undefined while the worker starts: again if a restore replaced the file
    // while this call waited.
    for (let attempt = 0; job === undefined; attempt++) {
      try {
        await worker.start();
        while (worker.busy) await worker.whenIdle();
      } catch {
        throw chainfireError(this.closed ? "STOPPED" : "TIMEOUT");
      }
      if (this.closed) throw chainfireError("STOPPED");
      if (attempt === 3) throw chainfireError("TIMEOUT");
      revision = this.revision;
      this.backend.commit();
      job = worker.beginFile(this.applied, file);
    }
    try {
      await job.written;
    } catch {
      // The worker was closed under it (the store closed, a restore or a defragment), or did not
      // pin in time. A copy the worker finished as it was closed is removed here.
      removeClientImage(file);
      throw chainfireError(this.closed ? "STOPPED" : "TIMEOUT");
    }
    return fileImage(file, revision);
  }

  // ---- apply --------------------------------------------------------------------------------------

  private applyEntry(entry: ApplyEntry): Uint8Array {
    const started = performance.now();
    const cmd = command.MvccCommand.decode(entry.command);
    let result: command.MvccResult;
    try {
      result = this.execute(cmd, entry);
    } catch (err) {
      if (!(err instanceof ChainfireError)) throw err;
      result = { error: { code: err.code, message: err.message } };
    }
    const tookMs = performance.now() - started;
    if (tookMs >= this.slowApplyMs) {
      this.stats.slowApplies++;
      this.onSlowApply?.(requestText(cmd), tookMs);
    }
    return entry.resultWanted === false ? NO_RESULT : encodeResult(result);
  }

  private execute(cmd: command.MvccCommand, entry: ApplyEntry): command.MvccResult {
    // Under the CORRUPT alarm every write a client asks for is refused until the alarm is
    // disarmed, as etcd's applier refuses them (a lease's expiry too: etcd revokes it with the
    // same refused request); reads, alarm requests and lease checkpoints go on.
    if (
      (cmd.put ||
        cmd.deleteRange ||
        cmd.txn ||
        cmd.compaction ||
        cmd.leaseGrant ||
        cmd.leaseRevoke ||
        cmd.leaseExpire) &&
      this.hasAlarm(etcd.AlarmType.CORRUPT)
    )
      throw chainfireError("CORRUPT");
    if (cmd.put) return { put: this.applyPut(cmd.put, entry) };
    if (cmd.deleteRange) return { deleteRange: this.applyDeleteRange(cmd.deleteRange, entry) };
    if (cmd.txn) return { txn: this.applyTxn(cmd.txn, entry) };
    if (cmd.compaction) return { compaction: this.applyCompaction(cmd.compaction) };
    if (cmd.leaseGrant) return { leaseGrant: this.applyLeaseGrant(cmd.leaseGrant, entry) };
    if (cmd.leaseRevoke) return { leaseRevoke: this.applyLeaseRevoke(cmd.leaseRevoke.ID, entry) };
    if (cmd.leaseCheckpoint) return { leaseCheckpoint: this.applyLeaseCheckpoint(cmd.leaseCheckpoint) };
    if (cmd.leaseExpire) return { leaseExpire: this.applyLeaseExpire(cmd.leaseExpire, entry) };
    if (cmd.alarm) return { alarm: this.applyAlarm(cmd.alarm) };
    throw chainfireError("INVALID_REQUEST");
  }

  private begin(entry: ApplyEntry): WriteContext {
    this.txnOps = 0;
    return { revision: this.revision + 1n, sub: 0, events: [], timestampMs: entry.timestampMs };
  }

  /** Ends a write: the revision advances only when something changed, as in etcd. */
  private end(ctx: WriteContext): void {
    this.opsEnd();
    if (ctx.sub === 0) return;
    this.revision = ctx.revision;
    for (const event of ctx.events) this.batchEvents.push(event);
  }

  /** Counts an operation of the store transaction running now. */
  private counted(kind: "ranges" | "puts" | "deletes"): void {
    this.stats[kind]++;
    this.txnOps++;
  }

  /** Ends a store transaction for the metrics: a txn when it made more than one operation. */
  private opsEnd(): void {
    if (this.txnOps > 1) this.stats.txns++;
    this.txnOps = 0;
  }

  private readRevision(ctx: WriteContext): bigint {
    return ctx.sub > 0 ? ctx.revision : this.revision;
  }

  private applyPut(req: etcd.PutRequest, entry: ApplyEntry): etcd.PutResponse {
    checkPut(req);
    if (this.noSpace()) throw chainfireError("NO_SPACE");
    // A put alone is refused for its lease before its key, as etcd orders the checks (a put inside
    // a txn the other way round: checkPutPreconditions).
    if (req.lease !== 0n && this.lessor.get(req.lease) === undefined) throw chainfireError("LEASE_NOT_FOUND");
    this.checkPutPreconditions(req);
    const ctx = this.begin(entry);
    const prev = this.put(ctx, req);
    this.end(ctx);
    return { header: header(this.revision), prevKv: req.prevKv ? (prev ?? undefined) : undefined };
  }

  private checkPutPreconditions(req: etcd.PutRequest): void {
    if (req.ignoreValue || req.ignoreLease) {
      if (this.index.get(keyString(req.key))?.current == null) throw chainfireError("KEY_NOT_FOUND");
    }
    if (req.lease !== 0n && this.lessor.get(req.lease) === undefined) throw chainfireError("LEASE_NOT_FOUND");
  }

  private put(ctx: WriteContext, req: etcd.PutRequest): mvccpb.KeyValue | null {
    if (req.prevKv || req.ignoreValue || req.ignoreLease) this.counted("ranges");
    this.counted("puts");
    const key = keyString(req.key);
    const record = this.index.getOrCreate(key);
    const prev = record.current;
    const lease = req.ignoreLease ? (prev?.lease ?? 0n) : req.lease;
    const kv: mvccpb.KeyValue = {
      // The decoded request's buffers are its own (the decoder copies): held as they are.
      key: prev?.key ?? req.key,
      createRevision: prev?.createRevision ?? ctx.revision,
      modRevision: ctx.revision,
      version: (prev?.version ?? 0n) + 1n,
      value: req.ignoreValue ? (prev?.value ?? EMPTY) : req.value,
      lease,
    };
    const sub = ctx.sub++;
    this.backend.putRow({
      main: ctx.revision,
      sub: BigInt(sub),
      key: kv.key,
      create_rev: kv.createRevision,
      version: kv.version,
      lease,
      value: kv.value,
      tombstone: 0n,
    });
    record.push(ctx.revision, sub, false);
    record.current = kv;
    if (prev === null) this.liveKeys++;
    if (prev !== null && prev.lease !== 0n && prev.lease !== lease) this.lessor.detach(prev.lease, key);
    if (lease !== 0n) this.lessor.attach(lease, key);
    // prev_kv is the value before this txn: a txn puts a key at most once, and a put after a delete
    // of the key in the same txn is a creation (none).
    ctx.events.push({ type: mvccpb.Event_EventType.PUT, kv, prevKv: prev ?? undefined });
    return prev;
  }

  private applyDeleteRange(req: etcd.DeleteRangeRequest, entry: ApplyEntry): etcd.DeleteRangeResponse {
    checkDeleteRange(req);
    const ctx = this.begin(entry);
    const deleted = this.deleteRange(ctx, keyRange(req.key, req.rangeEnd), req.prevKv);
    this.end(ctx);
    return {
      header: header(this.revision),
      deleted: BigInt(deleted.length),
      prevKvs: req.prevKv ? deleted : [],
    };
  }

  private deleteRange(ctx: WriteContext, range: KeyRange, prevKv: boolean): mvccpb.KeyValue[] {
    if (prevKv) this.counted("ranges");
    this.counted("deletes");
    const records = [...this.index.scan(range)].filter((record) => record.current !== null);
    return records.map((record) => this.deleteKey(ctx, record));
  }

  private deleteKey(ctx: WriteContext, record: KeyRecord): mvccpb.KeyValue {
    const prev = record.current!;
    const sub = ctx.sub++;
    const key = prev.key;
    this.backend.putRow({
      main: ctx.revision,
      sub: BigInt(sub),
      key,
      create_rev: 0n,
      version: 0n,
      lease: 0n,
      value: null,
      tombstone: 1n,
    });
    record.push(ctx.revision, sub, true);
    record.current = null;
    this.liveKeys--;
    if (prev.lease !== 0n) this.lessor.detach(prev.lease, record.key);
    // A key put earlier in this txn: etcd's prev_kv is its value from before the txn.
    const kv = tombstone(key, ctx.revision);
    const prevKv = prev.modRevision === ctx.revision ? this.eventPrevKv(record.key, kv, true) : prev;
    ctx.events.push({ type: mvccpb.Event_EventType.DELETE, kv, prevKv });
    return prev;
  }

  private applyTxn(req: etcd.TxnRequest, entry: ApplyEntry): etcd.TxnResponse {
    checkTxn(req, this.maxTxnOps);
    // Under the NOSPACE alarm etcd refuses a txn with a put in either branch, whichever one runs.
    if (this.noSpace() && [...req.success, ...req.failure].some((op) => op.requestPut !== undefined))
      throw chainfireError("NO_SPACE");
    // The compares are read in one store transaction, the operations run in another (etcd's too).
    this.txnOps = 0;
    const path = this.txnPath(req);
    this.opsEnd();
    this.checkTxnPreconditions(req, path);
    this.checkTxnRanges(req, path);
    const ctx = this.begin(entry);
    let response: etcd.TxnResponse;
    try {
      response = this.executeTxn(ctx, req, path);
    } catch (err) {
      // Every refusal is decided above, before the first write. A txn failing after a write would
      // leave this member's index and file ahead of its revision and of the other members: stop.
      if (ctx.sub > 0) throw new Error(`txn failed after its first write: ${String(err)}`);
      throw err;
    }
    this.end(ctx);
    response.header = header(this.revision);
    return response;
  }

  private txnPath(req: etcd.TxnRequest): TxnPath {
    const succeeded = req.compare.every((c) => this.compare(c));
    const nested: TxnPath[] = [];
    for (const op of succeeded ? req.success : req.failure) {
      if (op.requestTxn) nested.push(this.txnPath(op.requestTxn));
    }
    return { succeeded, nested };
  }

  private checkTxnPreconditions(req: etcd.TxnRequest, path: TxnPath): void {
    // No NOSPACE check here: etcd charges a txn for its top-level puts only (applyTxn refuses
    // those), so the puts of a nested txn are made under the alarm.
    for (const op of chosenOps(req, path)) {
      if (op.requestPut) this.checkPutPreconditions(op.requestPut);
    }
  }

  /**
   * etcd's checkRequestRange over the chosen branch, before anything runs: a read at a revision
   * above the store's (the txn's own revision included) or below the compaction refuses the whole
   * txn. A negative revision is below the compaction unless the store was never compacted (-1).
   * Every member refuses it. etcd 3.4 refuses it only on the member the client called: the others
   * drop the txn's reads before applying it and make its writes (etcd-io/etcd#18667).
   */
  private checkTxnRanges(req: etcd.TxnRequest, path: TxnPath): void {
    for (const op of chosenOps(req, path)) {
      const revision = op.requestRange?.revision ?? 0n;
      if (revision > this.revision) throw chainfireError("FUTURE_REV");
      if (revision !== 0n && revision < this.compacted) throw chainfireError("COMPACTED");
    }
  }

  /**
   * Runs the chosen branch. As in etcd, each operation's header carries the revision the txn has
   * reached when it ran: the store's revision until the txn's first change, the txn's own after it.
   */
  private executeTxn(ctx: WriteContext, req: etcd.TxnRequest, path: TxnPath): etcd.TxnResponse {
    let nestedIndex = 0;
    const responses: etcd.ResponseOp[] = [];
    for (const op of path.succeeded ? req.success : req.failure) {
      if (op.requestRange) {
        responses.push({ responseRange: this.rangeAt(op.requestRange, this.readRevision(ctx)) });
      } else if (op.requestPut) {
        const prev = this.put(ctx, op.requestPut);
        const prevKv = op.requestPut.prevKv ? (prev ?? undefined) : undefined;
        responses.push({ responsePut: { header: header(ctx.revision), prevKv } });
      } else if (op.requestDeleteRange) {
        const d = op.requestDeleteRange;
        const deleted = this.deleteRange(ctx, keyRange(d.key, d.rangeEnd), d.prevKv);
        responses.push({
          responseDeleteRange: {
            header: header(this.readRevision(ctx)),
            deleted: BigInt(deleted.length),
            prevKvs: d.prevKv ? deleted : [],
          },
        });
      } else if (op.requestTxn) {
        responses.push({ responseTxn: this.executeTxn(ctx, op.requestTxn, path.nested[nestedIndex++]!) });
      }
    }
    // As etcd's, a nested txn's own header is empty; its operations' are filled like any other's.
    return { header: header(0n), succeeded: path.succeeded, responses };
  }

  /** etcd's compare: every key in the range must satisfy it; a missing key compares as zero values. */
  private compare(c: etcd.Compare): boolean {
    this.counted("ranges");
    const records = [...this.index.scan(keyRange(c.key, c.rangeEnd))].filter((r) => r.current !== null);
    if (records.length === 0) {
      if (c.target === etcd.Compare_CompareTarget.VALUE) return false;
      return compareKv(c, null);
    }
    return records.every((record) => compareKv(c, record.current));
  }

  private applyCompaction(req: etcd.CompactionRequest): etcd.CompactionResponse {
    if (req.revision <= this.compacted) throw chainfireError("COMPACTED");
    if (req.revision > this.revision) throw chainfireError("FUTURE_REV");
    for (const record of [...this.index.all()]) this.compactKey(record, req.revision);
    this.compacted = req.revision;
    this.historyEpoch++;
    return { header: header(this.revision) };
  }

  /** Drops every entry older than the one visible at `revision`, and that one too if it is a tombstone. */
  private compactKey(record: KeyRecord, revision: bigint): void {
    let keep = record.indexAt(revision);
    if (keep < 0) return;
    if (record.tombstone(keep)) keep++;
    if (keep === 0) return;
    for (let i = 0; i < keep; i++) this.backend.removeRow(record.main(i), record.sub(i));
    record.dropOldest(keep);
    if (record.length === 0) this.index.remove(record.key);
  }

  private applyLeaseGrant(req: etcd.LeaseGrantRequest, entry: ApplyEntry): etcd.LeaseGrantResponse {
    if (this.noSpace()) throw chainfireError("NO_SPACE");
    if (req.TTL > MAX_LEASE_TTL_SECONDS) throw chainfireError("LEASE_TTL_TOO_LARGE");
    let id = req.ID;
    // An ID chosen at apply must be the same on every member: derive it from the leader's seed.
    if (id === 0n) id = entry.seed & INT63_MASK || 1n;
    if (this.lessor.get(id) !== undefined) throw chainfireError("LEASE_EXIST");
    const minTtl = this.lessor.options.minTtlSeconds;
    // biome-ignore lint/complexity/useMathMinMax: Math.max does not accept bigint.
    const ttl = req.TTL >= minTtl ? req.TTL : minTtl;
    this.backend.putLease(id, ttl, 0n);
    // Counted from its apply, as etcd's leader does, on the lessor's clock (not the entry's
    // timestamp: another member's wall clock).
    this.lessor.add(id, ttl, 0n, this.lessor.nowMs());
    return { header: header(this.revision), ID: id, TTL: ttl, error: "" };
  }

  private applyLeaseRevoke(id: bigint, entry: ApplyEntry): etcd.LeaseRevokeResponse {
    const lease = this.lessor.get(id);
    if (lease === undefined) throw chainfireError("LEASE_NOT_FOUND");
    const ctx = this.begin(entry);
    // One revision deletes every attached key, in key order, as etcd's revoke does.
    for (const key of [...lease.keys].sort()) {
      const record = this.index.get(key);
      if (record?.current == null) continue;
      this.counted("deletes");
      this.deleteKey(ctx, record);
    }
    this.end(ctx);
    this.lessor.delete(id);
    this.backend.deleteLease(id);
    return { header: header(this.revision) };
  }

  private applyLeaseCheckpoint(req: etcd.LeaseCheckpointRequest): etcd.LeaseCheckpointResponse {
    for (const checkpoint of req.checkpoints) {
      const lease = this.lessor.checkpointed(checkpoint.ID, checkpoint.remainingTTL);
      if (lease !== undefined) this.backend.putLease(lease.id, lease.ttlSeconds, checkpoint.remainingTTL);
    }
    return { header: header(this.revision) };
  }

  private applyLeaseExpire(req: command.LeaseExpireRequest, entry: ApplyEntry): etcd.LeaseRevokeResponse {
    for (const id of req.ids) {
      if (this.lessor.get(id) !== undefined) this.applyLeaseRevoke(id, entry);
    }
    return { header: header(this.revision) };
  }

  private applyAlarm(req: etcd.AlarmRequest): etcd.AlarmResponse {
    const name = `alarm:${req.memberID}:${req.alarm}`;
    const member: etcd.AlarmMember = { memberID: req.memberID, alarm: req.alarm };
    if (req.action === etcd.AlarmRequest_AlarmAction.ACTIVATE && req.alarm !== etcd.AlarmType.NONE) {
      // As etcd's AlarmStore.Activate: the alarm is answered whether it is new or already active.
      this.alarmSet.set(name, member);
      this.backend.setMetaValue(name, 1n);
      return { header: header(this.revision), alarms: [member] };
    }
    if (req.action === etcd.AlarmRequest_AlarmAction.DEACTIVATE) {
      const existed = this.alarmSet.delete(name);
      this.backend.deleteMeta(name);
      return { header: header(this.revision), alarms: existed ? [member] : [] };
    }
    return { header: header(this.revision), alarms: this.alarms(req.alarm) };
  }

  // ---- loading ------------------------------------------------------------------------------------

  private load(): void {
    this.historyEpoch++;
    this.index.clear();
    this.liveKeys = 0;
    this.lessor.clear();
    this.alarmSet.clear();
    this.applied = this.backend.meta("applied_index");
    // etcd's store starts at revision 1, so the first write is revision 2; etcdctl users see the same.
    this.revision = this.backend.meta("current_revision") || 1n;
    this.compacted = storedCompaction((name) => this.backend.metaOrUndefined(name));
    const lastRows = new Map<string, Row>();
    const records: KeyRecord[] = [];
    for (const row of this.backend.allRows()) {
      const key = row.key.toString("latin1");
      let record = this.index.get(key);
      if (record === undefined) {
        record = new KeyRecord(key);
        records.push(record);
        this.index.set(record);
      }
      record.push(row.main, Number(row.sub), row.tombstone !== 0n);
      lastRows.set(key, row);
    }
    this.index.sortKeys();
    // As etcd's lessor recovers: a TTL under this member's minimum (granted under shorter timings, or
    // restored from an etcd snapshot) is raised to it.
    const minTtl = this.lessor.options.minTtlSeconds;
    for (const lease of this.backend.allLeases())
      this.lessor.add(lease.id, lease.ttl < minTtl ? minTtl : lease.ttl, lease.remaining_ttl, null);
    for (const record of records) {
      const row = lastRows.get(record.key)!;
      record.current = row.tombstone !== 0n ? null : kvFromRow(row);
      if (record.current !== null) this.liveKeys++;
      if (record.current !== null && record.current.lease !== 0n) {
        this.lessor.attach(record.current.lease, record.key);
      }
    }
    const alarms = this.backend.db.prepare("SELECT name FROM meta WHERE name LIKE 'alarm:%'").pluck().all();
    for (const name of alarms as string[]) {
      const [, memberId, alarm] = name.split(":");
      this.alarmSet.set(name, { memberID: BigInt(memberId!), alarm: Number(alarm) });
    }
  }
}

/** Whether a txn (and every nested txn) only reads. */
/**
 * etcd's isTxnReadonly: every operation of both branches is a range. A nested txn makes it a write
 * even when it only reads, as in etcd: it goes through the log (and is refused under CORRUPT).
 */
export function isReadOnlyTxn(req: etcd.TxnRequest): boolean {
  return [...req.success, ...req.failure].every((op) => op.requestRange !== undefined);
}

function rangeHas(range: KeyRange, key: string): boolean {
  if (range.single) return key === range.start;
  return key >= range.start && (range.end === null || key < range.end);
}

function kvFromRow(row: Row): mvccpb.KeyValue {
  return {
    key: Buffer.from(row.key),
    createRevision: row.create_rev,
    modRevision: row.main,
    version: row.version,
    value: row.value === null ? EMPTY : Buffer.from(row.value),
    lease: row.lease,
  };
}

/** The defragmented copy of `<path>`, written beside it and renamed over it when complete. */
const DEFRAG_SUFFIX = ".defrag";

/** How much of a client image Hash reads per turn of the event loop. */
const HASH_PIECE_BYTES = 4 * 1024 * 1024;

/** Where the last compaction's revision is stored: -1 until the first compaction. */
const COMPACTED_META = "compacted_revision";

/**
 * The last compaction's revision recorded in a store's meta table. Stores written before
 * `COMPACTED_META` kept `compact_revision`, 0 until the first compaction (revision 0 could not be
 * compacted then): that 0 reads as -1.
 */
export function storedCompaction(meta: (name: string) => bigint | undefined): bigint {
  const compacted = meta(COMPACTED_META);
  if (compacted !== undefined) return compacted;
  const legacy = meta("compact_revision") ?? 0n;
  return legacy === 0n ? -1n : legacy;
}

/** Rows HashKV reads per event-loop turn (a few milliseconds of work). */
const HASH_CHUNK_ROWS = 256;
/** The name of etcd's bucket of revisions, with which its HashKV starts. */
const KEY_BUCKET = Buffer.from("key");
const EMPTY_KV: mvccpb.KeyValue = {
  key: EMPTY,
  createRevision: 0n,
  modRevision: 0n,
  version: 0n,
  value: EMPTY,
  lease: 0n,
};

/** Keys HashKV looks up in the index per event-loop turn. */
const HASH_CHUNK_KEYS = 4096;

/** See MvccStore.keptAt: by key, the main and sub revision visible at the hashed revision. */
interface KeptRevisions {
  main: Map<string, bigint>;
  sub: Map<string, number>;
  any: boolean;
}

function isKept(keep: KeptRevisions, row: Row): boolean {
  const key = keyString(row.key);
  return keep.main.get(key) === row.main && keep.sub.get(key) === Number(row.sub);
}

/** etcd's key for a revision in its backend: main and sub big-endian around '_', 't' if a deletion. */
function revisionKey(main: bigint, sub: bigint, deleted: boolean): Buffer {
  const bytes = Buffer.alloc(deleted ? 18 : 17);
  bytes.writeBigInt64BE(main, 0);
  bytes[8] = 0x5f;
  bytes.writeBigInt64BE(sub, 9);
  if (deleted) bytes[17] = 0x74;
  return bytes;
}

/** Every operation of the branches `path` chose, a nested txn's right after the nested txn itself. */
function* chosenOps(req: etcd.TxnRequest, path: TxnPath): Generator<etcd.RequestOp> {
  let nestedIndex = 0;
  for (const op of path.succeeded ? req.success : req.failure) {
    yield op;
    if (op.requestTxn) yield* chosenOps(op.requestTxn, path.nested[nestedIndex++]!);
  }
}

function passesFilters(req: etcd.RangeRequest, kv: mvccpb.KeyValue): boolean {
  if (req.minModRevision !== 0n && kv.modRevision < req.minModRevision) return false;
  if (req.maxModRevision !== 0n && kv.modRevision > req.maxModRevision) return false;
  if (req.minCreateRevision !== 0n && kv.createRevision < req.minCreateRevision) return false;
  if (req.maxCreateRevision !== 0n && kv.createRevision > req.maxCreateRevision) return false;
  return true;
}

function compareBigint(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Sorts as etcd: a non-KEY target with order NONE sorts ascending. The sort is stable. */
function sortKvs(kvs: mvccpb.KeyValue[], req: etcd.RangeRequest): mvccpb.KeyValue[] {
  const T = etcd.RangeRequest_SortTarget;
  let order = req.sortOrder;
  if (order === etcd.RangeRequest_SortOrder.NONE) order = etcd.RangeRequest_SortOrder.ASCEND;
  const by = (a: mvccpb.KeyValue, b: mvccpb.KeyValue): number => {
    switch (req.sortTarget) {
      case T.VERSION:
        return compareBigint(a.version, b.version);
      case T.CREATE:
        return compareBigint(a.createRevision, b.createRevision);
      case T.MOD:
        return compareBigint(a.modRevision, b.modRevision);
      case T.VALUE:
        return Buffer.compare(a.value, b.value);
      default:
        return Buffer.compare(a.key, b.key);
    }
  };
  const sign = order === etcd.RangeRequest_SortOrder.DESCEND ? -1 : 1;
  return [...kvs].sort((a, b) => sign * by(a, b));
}

function compareKv(c: etcd.Compare, kv: mvccpb.KeyValue | null): boolean {
  const T = etcd.Compare_CompareTarget;
  let result: number;
  switch (c.target) {
    case T.VALUE:
      result = Buffer.compare(kv?.value ?? EMPTY, c.value ?? EMPTY);
      break;
    case T.CREATE:
      result = compareBigint(kv?.createRevision ?? 0n, c.createRevision ?? 0n);
      break;
    case T.MOD:
      result = compareBigint(kv?.modRevision ?? 0n, c.modRevision ?? 0n);
      break;
    case T.LEASE:
      result = compareBigint(kv?.lease ?? 0n, c.lease ?? 0n);
      break;
    case T.VERSION:
      result = compareBigint(kv?.version ?? 0n, c.version ?? 0n);
      break;
    default:
      // As etcd: a target outside the enum compares as equal.
      result = 0;
  }
  const R = etcd.Compare_CompareResult;
  switch (c.result) {
    case R.EQUAL:
      return result === 0;
    case R.GREATER:
      return result > 0;
    case R.LESS:
      return result < 0;
    case R.NOT_EQUAL:
      return result !== 0;
    default:
      // As etcd: a result outside the enum holds.
      return true;
  }
}
