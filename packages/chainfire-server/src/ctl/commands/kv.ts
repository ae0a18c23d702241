// `put|get|del|watch`, shaped like etcdctl's so an etcd user's habits carry over: --prefix,
// --from-key, --rev, --limit, --sort-by/--order, --keys-only, --prev-kv, simple output of key then value.
import { spawnSync } from "node:child_process";
import { type ServiceError, status } from "@grpc/grpc-js";
import { etcd, type mvccpb } from "@photoncloud/chainfire-api";
import { prefixEnd } from "../../mvcc/key-range.js";
import { deleteRangeRequest, putRequest, rangeRequest as rangeRequestOf } from "../../mvcc/messages.js";
import { type Connection, callPrimary, type Endpoint, fromGrpc } from "../connection.js";
import { badArgument, CtlError } from "../errors.js";
import { goQuote } from "../../go-quote.js";
import { type CtlIo, INT64_MAX, type OutputFormat, parseHexId, toJsonOmitEmpty } from "../format.js";

export interface RangeFlags {
  prefix?: boolean;
  fromKey?: boolean;
}

export function rangeOf(
  key: string,
  rangeEnd: string | undefined,
  flags: RangeFlags,
): { key: Buffer; rangeEnd: Buffer } {
  if (flags.prefix && flags.fromKey) throw badArgument("--prefix and --from-key cannot be used together");
  if (rangeEnd !== undefined && (flags.prefix || flags.fromKey)) {
    throw badArgument("a range end cannot be combined with --prefix or --from-key");
  }
  const k = Buffer.from(key);
  if (flags.fromKey) return { key: k.length === 0 ? Buffer.from([0]) : k, rangeEnd: Buffer.from([0]) };
  if (flags.prefix) return { key: k.length === 0 ? Buffer.from([0]) : k, rangeEnd: prefixEnd(k) };
  return { key: k, rangeEnd: Buffer.from(rangeEnd ?? "") };
}

/** etcdctl's `--hex` form of a byte string: each byte as `\x` and two hex digits. */
export function hexBytes(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => `\\x${b.toString(16).padStart(2, "0")}`).join("");
}

/**
 * Each key-value as etcdctl prints it: the key's line (unless values only), then the value's line,
 * empty for --keys-only. Keys and values are bytes, written as they are (protobuf values included),
 * or as `\x..` with --hex.
 */
function printKvs(
  io: CtlIo,
  kvs: readonly mvccpb.KeyValue[],
  opts: { valuesOnly?: boolean | undefined; hex?: boolean | undefined },
): void {
  const line = (bytes: Buffer) => {
    if (opts.hex) io.out(hexBytes(bytes));
    else if (io.outBytes) io.outBytes(bytes);
    else io.out(bytes.toString());
  };
  for (const kv of kvs) {
    if (!opts.valuesOnly) line(kv.key);
    line(kv.value);
  }
}

export function parseBigint(text: string | undefined, flag: string): bigint {
  if (text === undefined) return 0n;
  if (!/^\d+$/.test(text)) throw badArgument(`${flag}: "${text}" is not a non-negative integer`);
  const value = BigInt(text);
  // The wire type is int64: a larger value could not be sent (etcdctl's parser refuses it too).
  if (value > INT64_MAX) throw badArgument(`${flag}: "${text}" is out of range (at most ${INT64_MAX})`);
  return value;
}

/**
 * etcdctl's key-value commands print simple lines or JSON; a table it refuses with its
 * ExitBadFeature. Checked before anything is sent, so the refused command changes nothing.
 */
function noTable(format: OutputFormat): void {
  if (format === "table") throw new CtlError("BAD_FEATURE", "table not supported as output format");
}

export interface PutFlags {
  lease?: string;
  prevKv?: boolean;
  ignoreValue?: boolean;
  ignoreLease?: boolean;
}

export async function put(
  conn: Connection,
  io: CtlIo,
  format: OutputFormat,
  key: string,
  value: string | undefined,
  flags: PutFlags,
): Promise<void> {
  noTable(format);
  if (key === "") throw badArgument("put needs a non-empty key");
  let bytes = value === undefined ? undefined : Buffer.from(value);
  if (bytes === undefined && !flags.ignoreValue) {
    if (!io.readStdin) throw badArgument("put needs a value (or --ignore-value)");
    // As etcdctl: every byte of stdin is the value (a trailing newline included); none is an error.
    bytes = Buffer.from(await io.readStdin());
    if (bytes.length === 0) throw badArgument("put needs a value: none given and stdin is empty");
  }
  const req = putRequest({
    key: Buffer.from(key),
    value: bytes ?? Buffer.alloc(0),
    lease: flags.lease === undefined ? 0n : parseHexId(flags.lease, "--lease", INT64_MAX),
    prevKv: flags.prevKv === true,
    ignoreValue: flags.ignoreValue === true,
    ignoreLease: flags.ignoreLease === true,
  });
  const res = await callPrimary(conn, (c) => c.kv.put.bind(c.kv), req);
  if (format === "json") return io.out(toJsonOmitEmpty(res));
  io.out("OK");
  if (res.prevKv) printKvs(io, [res.prevKv], { hex: conn.options.hex });
}

export interface GetFlags extends RangeFlags {
  rev?: string;
  limit?: string;
  sortBy?: string;
  order?: string;
  keysOnly?: boolean;
  countOnly?: boolean;
  printValueOnly?: boolean;
  consistency?: string;
}

const SORT_TARGETS: Record<string, etcd.RangeRequest_SortTarget> = {
  KEY: etcd.RangeRequest_SortTarget.KEY,
  VERSION: etcd.RangeRequest_SortTarget.VERSION,
  CREATE: etcd.RangeRequest_SortTarget.CREATE,
  MODIFY: etcd.RangeRequest_SortTarget.MOD,
  VALUE: etcd.RangeRequest_SortTarget.VALUE,
};
const SORT_ORDERS: Record<string, etcd.RangeRequest_SortOrder> = {
  ASCEND: etcd.RangeRequest_SortOrder.ASCEND,
  DESCEND: etcd.RangeRequest_SortOrder.DESCEND,
};

export function rangeRequest(key: string, rangeEnd: string | undefined, flags: GetFlags): etcd.RangeRequest {
  const sortTarget = SORT_TARGETS[(flags.sortBy ?? "KEY").toUpperCase()];
  if (sortTarget === undefined)
    throw badArgument(`--sort-by must be KEY, VERSION, CREATE, MODIFY or VALUE (got "${flags.sortBy}")`);
  let sortOrder = etcd.RangeRequest_SortOrder.NONE;
  if (flags.order !== undefined) {
    const order = SORT_ORDERS[flags.order.toUpperCase()];
    if (order === undefined) throw badArgument(`--order must be ASCEND or DESCEND (got "${flags.order}")`);
    sortOrder = order;
  } else if (flags.sortBy !== undefined) {
    sortOrder = etcd.RangeRequest_SortOrder.ASCEND;
  }
  const consistency = (flags.consistency ?? "l").toLowerCase();
  if (consistency !== "l" && consistency !== "s")
    throw badArgument(`--consistency must be l or s (got "${flags.consistency}")`);
  return rangeRequestOf({
    ...rangeOf(key, rangeEnd, flags),
    revision: parseBigint(flags.rev, "--rev"),
    limit: parseBigint(flags.limit, "--limit"),
    sortOrder,
    sortTarget,
    serializable: consistency === "s",
    keysOnly: flags.keysOnly === true,
    countOnly: flags.countOnly === true,
  });
}

export async function get(
  conn: Connection,
  io: CtlIo,
  format: OutputFormat,
  key: string,
  rangeEnd: string | undefined,
  flags: GetFlags,
): Promise<void> {
  // In etcdctl's order: --print-value-only's check comes first.
  if (flags.printValueOnly && format !== "simple") {
    throw badArgument("--print-value-only is only for --write-out=simple");
  }
  noTable(format);
  const res = await callPrimary(conn, (c) => c.kv.range.bind(c.kv), rangeRequest(key, rangeEnd, flags));
  if (format === "json") return io.out(toJsonOmitEmpty(res));
  if (flags.countOnly) return io.out(String(res.count));
  printKvs(io, res.kvs, { valuesOnly: flags.printValueOnly, hex: conn.options.hex });
}

export async function del(
  conn: Connection,
  io: CtlIo,
  format: OutputFormat,
  key: string,
  rangeEnd: string | undefined,
  flags: RangeFlags & { prevKv?: boolean },
): Promise<void> {
  noTable(format);
  const req = deleteRangeRequest({
    ...rangeOf(key, rangeEnd, flags),
    prevKv: flags.prevKv === true,
  });
  const res = await callPrimary(conn, (c) => c.kv.deleteRange.bind(c.kv), req);
  if (format === "json") return io.out(toJsonOmitEmpty(res));
  io.out(String(res.deleted));
  printKvs(io, res.prevKvs, { hex: conn.options.hex });
}

/**
 * One watch response as etcdctl prints it. Simple: each event's type, then its previous key-value
 * (with --prev-kv) and its key-value. JSON: the Go struct etcdctl prints, one line per response,
 * with its capitalised field names. etcd's client hands on every response the server sent with an
 * event list (`"Events":[]` when empty, as a compacted start's cancellation); a stream that ends
 * in an error (no leader) becomes its own zero response, cancelled, without one (`null`).
 */
function printResponse(
  io: CtlIo,
  format: OutputFormat,
  res: etcd.WatchResponse | "closed",
  prevKv: boolean,
  hex: boolean,
): void {
  if (res === "closed") {
    if (format === "json") {
      io.out('{"Header":{},"Events":null,"CompactRevision":0,"Canceled":true,"Created":false}');
    }
    return;
  }
  if (format === "json") {
    const events = `[${res.events.map((ev) => toJsonOmitEmpty(ev)).join(",")}]`;
    const header = res.header === undefined ? "{}" : toJsonOmitEmpty(res.header);
    io.out(
      `{"Header":${header},"Events":${events},"CompactRevision":${res.compactRevision},` +
        `"Canceled":${res.canceled},"Created":${res.created}}`,
    );
    return;
  }
  for (const ev of res.events) {
    io.out(ev.type === 0 ? "PUT" : "DELETE");
    if (prevKv && ev.prevKv) printKvs(io, [ev.prevKv], { hex });
    printKvs(io, ev.kv ? [ev.kv] : [], { hex });
  }
}

/**
 * Runs a watch's command (`watch <key> -- <command>...`) once for this event, as etcdctl does: in
 * turn, with this process's stdout and stderr, and the event in ETCD_WATCH_REVISION (the response's
 * revision), ETCD_WATCH_EVENT_TYPE, ETCD_WATCH_KEY and ETCD_WATCH_VALUE (Go-quoted). A command that
 * cannot start or fails ends the watch with exit status 1.
 */
function runForEvent(io: CtlIo, command: readonly string[], res: etcd.WatchResponse, ev: mvccpb.Event): void {
  const run = spawnSync(command[0]!, command.slice(1), {
    // Not this process's standard input (Go's exec gives /dev/null): `watch -i` reads requests there.
    stdio: ["ignore", "inherit", "inherit"],
    env: {
      ...process.env,
      ETCD_WATCH_REVISION: String(res.header?.revision ?? 0n),
      ETCD_WATCH_EVENT_TYPE: `"${ev.type === 0 ? "PUT" : "DELETE"}"`,
      ETCD_WATCH_KEY: goQuote(ev.kv?.key ?? Buffer.alloc(0)),
      ETCD_WATCH_VALUE: goQuote(ev.kv?.value ?? Buffer.alloc(0)),
    },
  });
  if (run.error === undefined && run.status === 0) return;
  // Ctrl-C reached the command too: the watch ends as interrupted (the signal's own exit status).
  if (run.signal === "SIGINT" || run.signal === "SIGTERM") {
    throw new CtlError("REPORTED", `the watch command was interrupted (${run.signal})`);
  }
  const why =
    run.error !== undefined
      ? `cannot run it: ${(run.error as NodeJS.ErrnoException).code ?? run.error.message}`
      : run.signal !== null
        ? `killed by ${run.signal}`
        : `exit status ${run.status}`;
  const shown = `[${command.map((arg) => JSON.stringify(arg)).join(" ")}]`;
  io.err(`command ${shown} error (${why})`);
  throw new CtlError("REPORTED", `the watch command failed (${why})`);
}

/**
 * How one watch stream ended: interrupted by the user, or cut (its member went away, or refused
 * it with an error etcd's client retries), after it was created or before.
 */
type StreamEnd =
  | "interrupted"
  | { readonly created: boolean; readonly progressed: boolean; readonly why: string };

export interface WatchFlags extends RangeFlags {
  rev?: string;
  prevKv?: boolean;
  /** The command run for each event (`watch <key> -- <command> <args>...`), if any. */
  exec?: readonly string[];
  /**
   * Each "progress" event on it asks the server for a progress notification, printed as etcdctl
   * prints one (`progress notify: <revision>`): the interactive watch's `progress` request.
   */
  progress?: EventTarget;
  /** Called once the server has created the watch (its first stream). */
  onCreated?: () => void;
}

/**
 * Streams events until interrupted (io.signal) or the server ends the watch: then, as etcdctl, a
 * "watch was canceled (why)" line and exit status 5. When the member serving it goes away, the
 * watch moves to the next endpoint that connects and resumes after the last revision it printed,
 * as etcd's client does, so no event is lost or printed twice.
 */
export async function watch(
  conn: Connection,
  io: CtlIo,
  format: OutputFormat,
  key: string,
  rangeEnd: string | undefined,
  flags: WatchFlags,
): Promise<void> {
  noTable(format);
  const create: etcd.WatchCreateRequest = {
    ...rangeOf(key, rangeEnd, flags),
    startRevision: parseBigint(flags.rev, "--rev"),
    progressNotify: false,
    filters: [],
    prevKv: flags.prevKv === true,
    watchId: 0n,
    fragment: false,
  };
  const hex = conn.options.hex === true;
  let endpoint = await conn.primary();
  // Streams in a row that ended without delivering an event: each waits longer before the next
  // try, so an endpoint that refuses at once (a learner, a member shutting down) or ends every
  // stream is not asked in a loop. The first refusal of a run is said once on stderr.
  let fruitless = 0;
  let refused = 0;
  for (;;) {
    const end = await watchOnce(conn, io, endpoint, create, flags, (res) => {
      printResponse(io, format, res, create.prevKv, hex);
      if (res === "closed") return;
      for (const ev of res.events) if (flags.exec !== undefined) runForEvent(io, flags.exec, res, ev);
    });
    if (end === "interrupted") return;
    fruitless = end.progressed ? 0 : fruitless + 1;
    refused = end.created ? 0 : refused + 1;
    if (refused === 1) io.err(`watch on ${endpoint.address} failed (${end.why}); trying the endpoints again`);
    if (fruitless > 0 && !(await conn.pause(Math.min(100 * 2 ** fruitless, 2000), io.signal))) return;
    const next = await conn.reconnect(endpoint, io.signal);
    if (next === null) return;
    endpoint = next;
  }
}

/** One watch stream; `create.startRevision` is kept at the revision to resume from. */
function watchOnce(
  conn: Connection,
  io: CtlIo,
  endpoint: Endpoint,
  create: etcd.WatchCreateRequest,
  { progress, onCreated }: Pick<WatchFlags, "progress" | "onCreated">,
  onResponse: (res: etcd.WatchResponse | "closed") => void,
): Promise<StreamEnd> {
  // As etcdctl's watch (clientv3.WithRequireLeader): a member cut off from its leader ends the
  // stream, and the watch moves on, instead of staying silent.
  const metadata = conn.metadata();
  metadata.set("hasleader", "true");
  const stream = conn.clients(endpoint).watch.watch(metadata);
  let created = false;
  let progressed = false;
  return new Promise<StreamEnd>((resolve, reject) => {
    // The first way the stream ends decides; what follows from it (the error a cancel raises, the
    // end after an error) is not reported again.
    let settled = false;
    const askProgress = () => {
      if (!settled) stream.write({ progressRequest: {} });
    };
    const stop = () => {
      settled = true;
      progress?.removeEventListener("progress", askProgress);
      stream.cancel();
      resolve("interrupted");
    };
    if (io.signal?.aborted) return stop();
    io.signal?.addEventListener("abort", stop, { once: true });
    progress?.addEventListener("progress", askProgress);
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      io.signal?.removeEventListener("abort", stop);
      progress?.removeEventListener("progress", askProgress);
      fn();
    };
    /** Ends the watch as etcdctl's ends when the server closes it: one line on stderr, exit 5. */
    const canceled = (why: string) => {
      if (settled) return;
      stream.cancel();
      io.err(`watch was canceled (${why})`);
      settle(() => reject(new CtlError("WATCH_CANCELED", "watch is canceled by the server")));
    };
    stream.on("data", (res: etcd.WatchResponse) => {
      if (settled) return;
      try {
        if (res.canceled) {
          canceled(
            res.compactRevision !== 0n
              ? "etcdserver: mvcc: required revision has been compacted"
              : res.cancelReason || "etcdserver: watch canceled",
          );
          // etcdctl prints the cancelling response too (in JSON; in simple form it has no lines).
          onResponse(res);
          return;
        }
        if (res.created) {
          if (!created) onCreated?.();
          created = true;
          // A watch from "now" resumes after the revision it was created at.
          if (create.startRevision === 0n) create.startRevision = (res.header?.revision ?? 0n) + 1n;
        }
        if (res.events.length === 0) {
          // A progress notification (etcd's client's IsProgressNotify), as etcdctl prints it.
          const revision = res.header?.revision ?? 0n;
          if (!res.created && res.compactRevision === 0n && revision !== 0n && progress !== undefined) {
            io.out(`progress notify: ${revision}`);
            onResponse(res);
          }
          return;
        }
        progressed = true;
        const last = res.events[res.events.length - 1]?.kv?.modRevision;
        if (last !== undefined) create.startRevision = last + 1n;
        onResponse(res);
      } catch (err) {
        // A watch command that failed: the watch ends with its error.
        stream.cancel();
        settle(() => reject(err));
      }
    });
    stream.on("error", (err: ServiceError) => {
      if (io.signal?.aborted) return settle(() => resolve("interrupted"));
      // The codes etcd's client retries on another endpoint; "no leader" (the answer to hasleader)
      // and any other code end the watch, as they end etcd's.
      const retried = err.code === status.UNAVAILABLE || err.code === status.INTERNAL;
      if (retried && err.details !== "etcdserver: no leader") {
        return settle(() => resolve({ created, progressed, why: err.details || status[err.code] }));
      }
      const first = !settled;
      canceled(fromGrpc(err, endpoint).message);
      if (first) onResponse("closed");
    });
    stream.on("end", () =>
      settle(() =>
        resolve(io.signal?.aborted ? "interrupted" : { created, progressed, why: "the stream ended" }),
      ),
    );
    stream.write({ createRequest: create });
  });
}
