// etcd's gRPC gateway: the etcd API as JSON over HTTP POST on the client URLs (`curl -X POST
// http://…:2379/v3/kv/range -d '{"key":"Zm9v"}'`), with the paths, JSON mapping and error bodies of
// etcd 3.4's gateway. Field names are the proto's own, 64-bit integers are strings, bytes are base64,
// enums are names, and zero values are left out. A call runs the same handlers (with the same
// learner and leader checks) as the gRPC call it stands for; streams (watch, lease keep-alive,
// election observe, snapshot) answer one `{"result":…}` line per message.
import { EventEmitter } from "node:events";
import { type IncomingMessage, STATUS_CODES, type ServerResponse } from "node:http";
import { Metadata, type ServiceError, status } from "@grpc/grpc-js";
import type { MethodDefinition } from "@grpc/proto-loader";
import type { GrpcServiceRegistration, HttpRouteHandler } from "@photoncloud/daemon";
import {
  firstJsonValue,
  JsonScanner,
  loadGatewayProtos,
  type MessageFields,
  messageFields,
  protoRequest,
} from "./gateway-json.js";

/** Gateway path (after `/v3/`) → gRPC method path, as etcd 3.4's rpc.proto annotations map them. */
const PATHS: Readonly<Record<string, string>> = {
  "kv/range": "/etcdserverpb.KV/Range",
  "kv/put": "/etcdserverpb.KV/Put",
  "kv/deleterange": "/etcdserverpb.KV/DeleteRange",
  "kv/txn": "/etcdserverpb.KV/Txn",
  "kv/compaction": "/etcdserverpb.KV/Compact",
  watch: "/etcdserverpb.Watch/Watch",
  "lease/grant": "/etcdserverpb.Lease/LeaseGrant",
  "lease/revoke": "/etcdserverpb.Lease/LeaseRevoke",
  "kv/lease/revoke": "/etcdserverpb.Lease/LeaseRevoke",
  "lease/keepalive": "/etcdserverpb.Lease/LeaseKeepAlive",
  "lease/timetolive": "/etcdserverpb.Lease/LeaseTimeToLive",
  "kv/lease/timetolive": "/etcdserverpb.Lease/LeaseTimeToLive",
  "lease/leases": "/etcdserverpb.Lease/LeaseLeases",
  "kv/lease/leases": "/etcdserverpb.Lease/LeaseLeases",
  "cluster/member/add": "/etcdserverpb.Cluster/MemberAdd",
  "cluster/member/remove": "/etcdserverpb.Cluster/MemberRemove",
  "cluster/member/update": "/etcdserverpb.Cluster/MemberUpdate",
  "cluster/member/list": "/etcdserverpb.Cluster/MemberList",
  "cluster/member/promote": "/etcdserverpb.Cluster/MemberPromote",
  "maintenance/alarm": "/etcdserverpb.Maintenance/Alarm",
  "maintenance/status": "/etcdserverpb.Maintenance/Status",
  "maintenance/defragment": "/etcdserverpb.Maintenance/Defragment",
  "maintenance/hash": "/etcdserverpb.Maintenance/Hash",
  "maintenance/snapshot": "/etcdserverpb.Maintenance/Snapshot",
  "maintenance/transfer-leadership": "/etcdserverpb.Maintenance/MoveLeader",
  "auth/authenticate": "/etcdserverpb.Auth/Authenticate",
  // The rest of etcd's Auth service, which chainfire does not implement: answered as its gRPC is.
  "auth/enable": "/etcdserverpb.Auth/AuthEnable",
  "auth/disable": "/etcdserverpb.Auth/AuthDisable",
  "auth/user/add": "/etcdserverpb.Auth/UserAdd",
  "auth/user/get": "/etcdserverpb.Auth/UserGet",
  "auth/user/list": "/etcdserverpb.Auth/UserList",
  "auth/user/delete": "/etcdserverpb.Auth/UserDelete",
  "auth/user/changepw": "/etcdserverpb.Auth/UserChangePassword",
  "auth/user/grant": "/etcdserverpb.Auth/UserGrantRole",
  "auth/user/revoke": "/etcdserverpb.Auth/UserRevokeRole",
  "auth/role/add": "/etcdserverpb.Auth/RoleAdd",
  "auth/role/get": "/etcdserverpb.Auth/RoleGet",
  "auth/role/list": "/etcdserverpb.Auth/RoleList",
  "auth/role/delete": "/etcdserverpb.Auth/RoleDelete",
  "auth/role/grant": "/etcdserverpb.Auth/RoleGrantPermission",
  "auth/role/revoke": "/etcdserverpb.Auth/RoleRevokePermission",
  "election/campaign": "/v3electionpb.Election/Campaign",
  "election/proclaim": "/v3electionpb.Election/Proclaim",
  "election/leader": "/v3electionpb.Election/Leader",
  "election/observe": "/v3electionpb.Election/Observe",
  "election/resign": "/v3electionpb.Election/Resign",
  "lock/lock": "/v3lockpb.Lock/Lock",
  "lock/unlock": "/v3lockpb.Lock/Unlock",
};

/** The gateway's prefixes: etcd 3.4 serves the API under both. */
const PREFIXES = ["/v3/", "/v3beta/"];

/** grpc-gateway's HTTP status for a gRPC code. */
const HTTP_STATUS: Readonly<Record<number, number>> = {
  [status.OK]: 200,
  [status.CANCELLED]: 408,
  [status.UNKNOWN]: 500,
  [status.INVALID_ARGUMENT]: 400,
  [status.DEADLINE_EXCEEDED]: 504,
  [status.NOT_FOUND]: 404,
  [status.ALREADY_EXISTS]: 409,
  [status.PERMISSION_DENIED]: 403,
  [status.UNAUTHENTICATED]: 401,
  [status.RESOURCE_EXHAUSTED]: 429,
  [status.FAILED_PRECONDITION]: 412,
  [status.ABORTED]: 409,
  [status.OUT_OF_RANGE]: 400,
  [status.UNIMPLEMENTED]: 501,
  [status.INTERNAL]: 500,
  [status.UNAVAILABLE]: 503,
  [status.DATA_LOSS]: 500,
};

type Handler = (call: GatewayCall, callback?: (err: ServiceError | null, res?: unknown) => void) => void;

/** What the handlers see of a call: the parts of a grpc-js call they use. */
class GatewayCall extends EventEmitter {
  readonly metadata = new Metadata();
  cancelled = false;
  constructor(
    readonly request: unknown,
    private readonly sink?: (message: unknown) => boolean,
    private readonly finish?: () => void,
  ) {
    super();
  }
  write(message: unknown): boolean {
    return this.sink?.(message) ?? true;
  }
  end(): void {
    this.finish?.();
  }
}

export interface GatewayConfig {
  readonly services: readonly GrpcServiceRegistration[];
  /** The folder the etcd .proto files are under (`etcd/etcdserverpb/rpc.proto`, …). */
  readonly protoRoot: string;
  /** Largest request body accepted, in bytes (a JSON body is larger than its message). */
  readonly maxBodyBytes: number;
}

/** The gateway's routes for the daemon kit's HTTP handler, by exact path. */
export function etcdGatewayRoutes(config: GatewayConfig): Record<string, HttpRouteHandler> {
  const definitions = loadGatewayProtos(config.protoRoot);
  const messages = messageFields(definitions);
  const json = new Map<string, MethodDefinition<object, object>>();
  for (const service of Object.values(definitions)) {
    if (!("format" in service))
      for (const method of Object.values(service))
        json.set(method.path, method as MethodDefinition<object, object>);
  }
  const handlers = new Map<
    string,
    { handler: Handler; grpc: GrpcServiceRegistration["definition"][string] }
  >();
  for (const { definition, implementation } of config.services) {
    for (const [name, grpc] of Object.entries(definition)) {
      const handler = implementation[name];
      if (handler !== undefined) handlers.set(grpc.path, { handler: handler as unknown as Handler, grpc });
    }
  }
  const routes: Record<string, HttpRouteHandler> = {};
  for (const [path, method] of Object.entries(PATHS)) {
    const served = handlers.get(method);
    const mapping = json.get(method);
    const route: HttpRouteHandler =
      served === undefined || mapping === undefined
        ? (_req, res) =>
            sendError(res, status.UNIMPLEMENTED, `The server does not implement the method ${method}`)
        : (req, res) =>
            serve(req, res, {
              ...served,
              mapping,
              // The request types are in their service's package (`/etcdserverpb.KV/Range`).
              requestType: `${method.slice(1, method.lastIndexOf(".", method.lastIndexOf("/")))}.${(mapping.requestType.type as { name: string }).name}`,
              messages,
              maxBodyBytes: config.maxBodyBytes,
            });
    for (const prefix of PREFIXES) routes[`${prefix}${path}`] = route;
  }
  return routes;
}

function sendError(res: ServerResponse, code: number, message: string): void {
  res.writeHead(HTTP_STATUS[code] ?? 500, { "content-type": "application/json" });
  res.end(JSON.stringify({ error: message, message, code }));
}

/** The body as text, or null when it is over `max` bytes (the rest is read and dropped, so the
 * client, still sending, gets the answer rather than a reset connection). */
async function readBody(req: IncomingMessage, max: number): Promise<string | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size <= max) chunks.push(chunk);
  }
  return size > max ? null : Buffer.concat(chunks).toString("utf8");
}

/** One gateway method: the handler, its gRPC and JSON codecs, and how to read its request's names. */
interface Route {
  readonly handler: Handler;
  readonly grpc: GrpcServiceRegistration["definition"][string];
  readonly mapping: MethodDefinition<object, object>;
  /** The request message's full name (a key of `messages`). */
  readonly requestType: string;
  readonly messages: MessageFields;
  readonly maxBodyBytes: number;
}

async function serve(req: IncomingMessage, res: ServerResponse, route: Route): Promise<void> {
  const { handler, grpc, mapping, requestType, messages, maxBodyBytes } = route;
  if (req.method !== "POST") {
    res.writeHead(405, { "content-type": "text/plain; charset=utf-8" });
    res.end("Method Not Allowed\n");
    return;
  }
  if (req.httpVersionMajor === 1) {
    // The HTTP/1 side drops a connection after 66 s without traffic (for probes and scrapes); a
    // watch or a waiting lock may be quiet for longer. The connection's timeout is back afterwards.
    const socket = req.socket;
    const idleMs = socket.timeout;
    socket.setTimeout(0);
    res.once("close", () => {
      if (idleMs !== undefined && !socket.destroyed) socket.setTimeout(idleMs);
    });
  }
  // grpc-gateway's AnnotateContext: Grpc-Timeout is the call's deadline, Grpc-Metadata-* its metadata.
  const timeout = req.headers["grpc-timeout"];
  const timeoutMs = timeout === undefined ? undefined : grpcTimeoutMs(String(timeout));
  if (timeoutMs === null) return sendError(res, status.INVALID_ARGUMENT, `invalid grpc-timeout: ${timeout}`);
  const annotate = (call: GatewayCall) => {
    for (const [name, value] of Object.entries(req.headers)) {
      if (!name.startsWith(METADATA_HEADER) || value === undefined) continue;
      for (const v of Array.isArray(value) ? value : [value])
        call.metadata.add(name.slice(METADATA_HEADER.length), v);
    }
    return call;
  };
  const toRequest = (value: unknown) =>
    grpc.requestDeserialize(mapping.requestSerialize(protoRequest(value, requestType, messages)));
  const toJson = (message: unknown) => mapping.responseDeserialize(grpc.responseSerialize(message) as Buffer);
  if (grpc.requestStream) {
    // As etcd's gateway: each message goes to the stream as soon as the body has it, so a watch
    // starts while a client still sending its body waits.
    const side = streamRequests(req, res, handler, toRequest, toJson, maxBodyBytes, annotate);
    if (timeoutMs !== undefined)
      deadline(res, timeoutMs, () => side.fail(status.DEADLINE_EXCEEDED, DEADLINE_TEXT));
    return;
  }
  const body = await readBody(req, maxBodyBytes);
  if (body === null) return sendError(res, status.RESOURCE_EXHAUSTED, "etcdserver: request is too large");
  let request: unknown;
  try {
    request = toRequest(firstJsonValue(body));
  } catch (err) {
    return sendError(res, status.INVALID_ARGUMENT, (err as Error).message);
  }
  if (!grpc.responseStream) {
    const call = annotate(new GatewayCall(request));
    if (timeoutMs !== undefined)
      deadline(res, timeoutMs, () => {
        call.cancelled = true;
        call.emit("cancelled");
        sendError(res, status.DEADLINE_EXCEEDED, DEADLINE_TEXT);
      });
    res.once("close", () => {
      // writableEnded, not writableFinished: an HTTP/2 stream the client reset reports finished.
      if (res.writableEnded) return;
      call.cancelled = true;
      call.emit("cancelled");
    });
    handler(call, (err, response) => {
      if (res.writableEnded) return;
      if (err) return sendError(res, err.code ?? status.UNKNOWN, err.details ?? err.message);
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(toJson(response)));
    });
    return;
  }
  const side = streamCall(res, handler, request, toJson, annotate);
  if (timeoutMs !== undefined)
    deadline(res, timeoutMs, () => side.fail(status.DEADLINE_EXCEEDED, DEADLINE_TEXT));
}

const METADATA_HEADER = "grpc-metadata-";
/** What a Go gRPC call answers when its context's deadline passes. */
const DEADLINE_TEXT = "context deadline exceeded";

/**
 * A Grpc-Timeout header's value in ms (gRPC's form: up to 8 digits and a unit, H M S m u n), or
 * null when it is not one.
 */
export function grpcTimeoutMs(text: string): number | null {
  const match = /^(\d{1,8})([HMSmun])$/.exec(text);
  if (match === null) return null;
  const perUnit = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 }[match[2] as "H"];
  return Number(match[1]) * perUnit;
}

/** Calls `expire` once `ms` have passed, unless the response ended first. */
function deadline(res: ServerResponse, ms: number, expire: () => void): void {
  const timer = setTimeout(() => {
    if (!res.writableEnded) expire();
  }, ms);
  res.once("close", () => clearTimeout(timer));
  res.once("finish", () => clearTimeout(timer));
}

/** What a streaming call's HTTP side offers the request reader. */
interface StreamSide {
  /** Ends the response with a stream error line (or an error answer before any message). */
  fail(code: number, message: string): void;
  /** The client sent every message it will send (answered messages then half-close the call). */
  bodyDone(): void;
  /** Hands one request message to the call. */
  send(request: unknown): void;
}

/** A client-streaming call: messages are parsed from the body as they arrive. */
function streamRequests(
  req: IncomingMessage,
  res: ServerResponse,
  handler: Handler,
  toRequest: (value: unknown) => unknown,
  toJson: (message: unknown) => unknown,
  maxBodyBytes: number,
  annotate: (call: GatewayCall) => GatewayCall,
): StreamSide {
  const side = streamCall(res, handler, undefined, toJson, annotate);
  const scanner = new JsonScanner();
  let sent = 0;
  let failed = false;
  const fail = (code: number, message: string) => {
    failed = true;
    side.fail(code, message);
  };
  req.setEncoding("utf8");
  req.on("data", (chunk: string) => {
    if (failed) return;
    if (scanner.bufferedLength + chunk.length > maxBodyBytes)
      return fail(status.RESOURCE_EXHAUSTED, "etcdserver: request is too large");
    try {
      scanner.pushEach(chunk, (value) => {
        const request = toRequest(value);
        sent++;
        side.send(request);
      });
    } catch (err) {
      unreadable((err as Error).message);
    }
  });
  // etcd's gateway answers an unreadable first message with UNKNOWN (HTTP 500); after the first, it
  // stops reading and half-closes the stream, so what was sent before is still answered.
  const unreadable = (message: string) => {
    if (sent === 0) return fail(status.UNKNOWN, message);
    failed = true;
    side.bodyDone();
  };
  req.on("end", () => {
    if (failed) return;
    if (scanner.pending) return unreadable(scanner.endError());
    // An empty body sends nothing: the stream is half-closed at once, as etcd's gateway does.
    side.bodyDone();
  });
  return side;
}

function streamCall(
  res: ServerResponse,
  handler: Handler,
  request: unknown,
  toJson: (message: unknown) => unknown,
  annotate: (call: GatewayCall) => GatewayCall,
): StreamSide {
  let ended = false;
  let received = 0;
  let answered = 0;
  let bodyDone = false;
  let halfClosed = false;
  const start = () => {
    if (!res.headersSent) res.writeHead(200, { "content-type": "application/json" });
  };
  // Every message of the body answered, and the body over: the client's half-close, as etcd's
  // gateway sends it (a keep-alive then ends; a watch stays open). Not sooner: a keep-alive relayed
  // to the leader would be cancelled by it before the leader's answer came.
  const maybeHalfClose = () => {
    if (halfClosed || !bodyDone || answered < received) return;
    halfClosed = true;
    queueMicrotask(() => call.emit("end"));
  };
  const call: GatewayCall = new GatewayCall(
    request,
    (message) => {
      if (ended) return false;
      start();
      const flowing = res.write(`${JSON.stringify({ result: toJson(message) })}\n`);
      answered++;
      maybeHalfClose();
      return flowing;
    },
    () => {
      if (ended) return;
      ended = true;
      start();
      res.end();
    },
  );
  const fail = (code: number, message: string) => {
    if (ended) return;
    ended = true;
    if (!res.headersSent) sendError(res, code, message);
    else {
      const httpCode = HTTP_STATUS[code] ?? 500;
      const error = { grpc_code: code, http_code: httpCode, message, http_status: STATUS_CODES[httpCode] };
      res.end(`${JSON.stringify({ error })}\n`);
    }
    call.cancelled = true;
    call.emit("cancelled");
  };
  call.on("error", (err: ServiceError) => fail(err.code ?? status.UNKNOWN, err.details ?? err.message));
  res.on("drain", () => call.emit("drain"));
  res.once("close", () => {
    if (ended) return;
    ended = true;
    call.cancelled = true;
    call.emit("cancelled");
    call.emit("close");
  });
  handler(annotate(call));
  return {
    fail,
    bodyDone: () => {
      bodyDone = true;
      maybeHalfClose();
    },
    send: (message) => {
      if (ended) return;
      received++;
      call.emit("data", message);
    },
  };
}
