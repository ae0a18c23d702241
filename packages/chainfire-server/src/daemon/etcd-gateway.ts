// etcd's gRPC gateway: the etcd API as JSON over HTTP POST on the client URLs (`curl -X POST
// http://…:2379/v3/kv/range -d '{"key":"Zm9v"}'`), with the paths, JSON mapping and error bodies of
// etcd 3.4's gateway. Field names are the proto's own, 64-bit integers are strings, bytes are base64,
// enums are names, and zero values are left out. A call runs the same handlers (with the same
// learner and leader checks) as the gRPC call it stands for; streams (watch, lease keep-alive,
// election observe, snapshot) answer one `{"result":…}` line per message.
import { EventEmitter } from "node:events";
import { type IncomingMessage, STATUS_CODES, type ServerResponse } from "node:http";
import { Metadata, type ServiceError, status } from "@grpc/grpc-js";
import { loadSync, type MethodDefinition } from "@grpc/proto-loader";
import type { GrpcServiceRegistration, HttpRouteHandler } from "@photoncloud/daemon";

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

/** etcd's default CORS answer (its --cors defaults to "*"). */
const CORS = {
  "access-control-allow-origin": "*",
  "access-control-allow-methods": "POST, GET, OPTIONS, PUT, DELETE",
  "access-control-allow-headers": "accept, content-type, authorization",
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
  const definitions = loadSync(
    ["etcd/etcdserverpb/rpc.proto", "etcd/v3lockpb/v3lock.proto", "etcd/v3electionpb/v3election.proto"],
    {
      includeDirs: [config.protoRoot],
      keepCase: true,
      longs: String,
      enums: String,
      bytes: String,
      defaults: false,
      oneofs: false,
    },
  );
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

/** Per message (full name): each accepted JSON key → the proto field name and its message type. */
type Messages = ReadonlyMap<string, ReadonlyMap<string, FieldInfo>>;

interface FieldInfo {
  readonly name: string;
  /** The message type of a message field. */
  readonly type?: string;
  readonly bytes: boolean;
}

interface FieldDescriptor {
  readonly name: string;
  readonly type: string;
  readonly typeName: string;
}

/** proto3 JSON's name for a field: lowerCamelCase (`range_end` → `rangeEnd`). */
function jsonName(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

/**
 * The names each message's fields go by in JSON: the proto's own (what the gateway prints) and
 * proto3 JSON's lowerCamelCase, both accepted on input as etcd's gateway (jsonpb) accepts them.
 */
function messageFields(definitions: ReturnType<typeof loadSync>): Messages {
  const out = new Map<string, Map<string, FieldInfo>>();
  const names = new Set(Object.keys(definitions));
  for (const [full, definition] of Object.entries(definitions)) {
    if (!("format" in definition) || definition.format !== "Protocol Buffer 3 DescriptorProto") continue;
    const pkg = full.slice(0, full.lastIndexOf("."));
    const fields = new Map<string, FieldInfo>();
    for (const f of (definition.type as { field: FieldDescriptor[] }).field) {
      let type: string | undefined;
      if (f.type === "TYPE_MESSAGE") {
        const relative = f.typeName.replace(/^\./, "");
        type = names.has(`${pkg}.${relative}`) ? `${pkg}.${relative}` : relative;
      }
      const info = { name: f.name, type, bytes: f.type === "TYPE_BYTES" };
      fields.set(jsonName(f.name), info);
      fields.set(f.name, info);
    }
    out.set(full, fields);
  }
  return out;
}

/** A JSON request with every field under its proto name (keys neither name are left as they are). */
function protoNames(value: object, type: string, messages: Messages): object {
  const fields = messages.get(type);
  if (fields === undefined) return value;
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    const field = fields.get(key);
    if (field === undefined) {
      out[key] = v;
      continue;
    }
    const nested = (x: unknown) => {
      if (field.type !== undefined && x !== null && typeof x === "object" && !Array.isArray(x))
        return protoNames(x, field.type, messages);
      // Base64 broken into lines (as many encoders write it) is read as Go's decoder reads it.
      if (field.bytes && typeof x === "string") return x.replace(/[\r\n]/g, "");
      return x;
    };
    out[field.name] = Array.isArray(v) ? v.map(nested) : nested(v);
  }
  return out;
}

function sendError(res: ServerResponse, code: number, message: string): void {
  res.writeHead(HTTP_STATUS[code] ?? 500, { "content-type": "application/json", ...CORS });
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

/** A JSON number token (the gateway quotes integers too large for a double, as strings). */
const NUMBER = /-?\d+(\.\d+)?([eE][+-]?\d+)?/y;

/**
 * The JSON values of a body, one after another (a stream's messages); an empty body is one `{}`.
 * Integers beyond 2^53 are read as strings, so 64-bit IDs sent as JSON numbers keep every digit
 * (etcd's gateway reads them exactly).
 */
export function jsonValues(text: string): unknown[] {
  const { values, rest } = scanJson(text, false);
  if (rest !== "") throw new SyntaxError("unexpected end of JSON input");
  return values.length === 0 ? [{}] : values;
}

/**
 * The complete JSON values at the start of `text`, and the rest: a value not yet complete (more of
 * a streamed body is still to come), or "". In a stream (`objectsOnly`) every value must be an
 * object or an array; otherwise a bare literal ends the text and JSON.parse says what it is.
 */
export function scanJson(text: string, objectsOnly: boolean): { values: unknown[]; rest: string } {
  const values: unknown[] = [];
  let depth = 0;
  let inString = false;
  let out = "";
  let copyFrom = 0;
  let valueStart = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (depth === 0) {
      if (c === "{" || c === "[") {
        depth = 1;
        out = "";
        copyFrom = i;
        valueStart = i;
      } else if (c === "}" || c === "]") throw new SyntaxError(`unexpected ${c} at ${i}`);
      else if (!/\s/.test(c)) {
        if (objectsOnly) throw new SyntaxError("a streamed request body is a sequence of JSON objects");
        // A bare literal (a string, `null`, a number): JSON.parse says what it is.
        values.push(JSON.parse(text.slice(i)));
        return { values, rest: "" };
      }
      continue;
    }
    if (c === '"') inString = true;
    else if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") {
      if (--depth === 0) {
        values.push(JSON.parse(out + text.slice(copyFrom, i + 1)));
        copyFrom = i + 1;
      }
    } else if (c === "-" || (c >= "0" && c <= "9")) {
      NUMBER.lastIndex = i;
      const token = NUMBER.exec(text)?.[0] ?? c;
      const integer = !/[.eE]/.test(token);
      if (integer && !Number.isSafeInteger(Number(token))) {
        out += `${text.slice(copyFrom, i)}"${token}"`;
        copyFrom = i + token.length;
      }
      i += token.length - 1;
    }
  }
  return { values, rest: depth > 0 || inString ? text.slice(valueStart) : "" };
}

/** One gateway method: the handler, its gRPC and JSON codecs, and how to read its request's names. */
interface Route {
  readonly handler: Handler;
  readonly grpc: GrpcServiceRegistration["definition"][string];
  readonly mapping: MethodDefinition<object, object>;
  /** The request message's full name (a key of `messages`). */
  readonly requestType: string;
  readonly messages: Messages;
  readonly maxBodyBytes: number;
}

async function serve(req: IncomingMessage, res: ServerResponse, route: Route): Promise<void> {
  const { handler, grpc, mapping, requestType, messages, maxBodyBytes } = route;
  if (req.method === "OPTIONS") {
    res.writeHead(200, CORS);
    res.end();
    return;
  }
  if (req.method !== "POST") {
    res.writeHead(405, { "content-type": "text/plain; charset=utf-8", ...CORS });
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
  const toRequest = (value: unknown) => {
    if (value === null || typeof value !== "object" || Array.isArray(value))
      throw new SyntaxError("the request body is not a JSON object");
    return grpc.requestDeserialize(mapping.requestSerialize(protoNames(value, requestType, messages)));
  };
  const toJson = (message: unknown) => mapping.responseDeserialize(grpc.responseSerialize(message) as Buffer);
  if (grpc.requestStream) {
    // As etcd's gateway: each message goes to the stream as soon as the body has it, so a watch
    // starts while a client still sending its body waits.
    streamRequests(req, res, handler, toRequest, toJson, maxBodyBytes);
    return;
  }
  const body = await readBody(req, maxBodyBytes);
  if (body === null) return sendError(res, status.RESOURCE_EXHAUSTED, "etcdserver: request is too large");
  let request: unknown;
  try {
    const values = jsonValues(body);
    if (values.length > 1) throw new SyntaxError("the request body holds more than one JSON object");
    request = toRequest(values[0]);
  } catch (err) {
    return sendError(res, status.INVALID_ARGUMENT, (err as Error).message);
  }
  if (!grpc.responseStream) {
    const call = new GatewayCall(request);
    res.once("close", () => {
      // writableEnded, not writableFinished: an HTTP/2 stream the client reset reports finished.
      if (res.writableEnded) return;
      call.cancelled = true;
      call.emit("cancelled");
    });
    handler(call, (err, response) => {
      if (res.writableEnded) return;
      if (err) return sendError(res, err.code ?? status.UNKNOWN, err.details ?? err.message);
      res.writeHead(200, { "content-type": "application/json", ...CORS });
      res.end(JSON.stringify(toJson(response)));
    });
    return;
  }
  streamCall(res, handler, request, toJson);
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
): void {
  const side = streamCall(res, handler, undefined, toJson);
  let pending = "";
  let sent = 0;
  let failed = false;
  const fail = (code: number, message: string) => {
    failed = true;
    side.fail(code, message);
  };
  req.setEncoding("utf8");
  req.on("data", (chunk: string) => {
    if (failed) return;
    pending += chunk;
    if (pending.length > maxBodyBytes)
      return fail(status.RESOURCE_EXHAUSTED, "etcdserver: request is too large");
    try {
      const { values, rest } = scanJson(pending, true);
      pending = rest;
      for (const value of values) {
        sent++;
        side.send(toRequest(value));
      }
    } catch (err) {
      fail(status.INVALID_ARGUMENT, (err as Error).message);
    }
  });
  req.on("end", () => {
    if (failed) return;
    if (pending.trim() !== "") return fail(status.INVALID_ARGUMENT, "unexpected end of JSON input");
    // An empty body is one empty request, as for the other methods.
    if (sent === 0) side.send(toRequest({}));
    side.bodyDone();
  });
}

function streamCall(
  res: ServerResponse,
  handler: Handler,
  request: unknown,
  toJson: (message: unknown) => unknown,
): StreamSide {
  let ended = false;
  let received = 0;
  let answered = 0;
  let bodyDone = false;
  let halfClosed = false;
  const start = () => {
    if (!res.headersSent) res.writeHead(200, { "content-type": "application/json", ...CORS });
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
  handler(call);
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
