// Every handler added through the kit goes through here: thrown or returned errors are mapped by
// toGrpcError (so no internal text leaks), and each call is counted and timed by status code.

import {
  type handleBidiStreamingCall,
  type handleClientStreamingCall,
  type handleServerStreamingCall,
  type handleUnaryCall,
  type MethodDefinition,
  type ServiceDefinition,
  status,
  type UntypedHandleCall,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import type { Logger } from "pino";
import { toGrpcError } from "../errors.js";
import type { DaemonMetrics, GrpcCallLabels, GrpcCallType } from "../metrics.js";

export interface InstrumentContext {
  readonly logger: Pick<Logger, "error">;
  /** Omit to map errors without recording metrics. */
  readonly metrics?: DaemonMetrics;
}

function labelsOf(method: MethodDefinition<unknown, unknown>): GrpcCallLabels {
  const [service = "unknown", name = "unknown"] = method.path.replace(/^\//, "").split("/");
  const type: GrpcCallType = method.requestStream
    ? method.responseStream
      ? "bidi_stream"
      : "client_stream"
    : method.responseStream
      ? "server_stream"
      : "unary";
  return { grpc_service: service, grpc_method: name, grpc_type: type };
}

type Recorder = () => (code: status) => void;

/**
 * Per method, its stats are looked up once (see GrpcMethodStats: plain numbers, read at scrape
 * time); each call records its start now and its end once (the first final status wins).
 */
function methodRecorder(ctx: InstrumentContext, labels: GrpcCallLabels): Recorder {
  const metrics = ctx.metrics;
  if (metrics === undefined) return () => () => {};
  const stats = metrics.grpcMethod(labels);
  return () => {
    stats.started++;
    const startNs = process.hrtime.bigint();
    let done = false;
    return (code) => {
      if (done) return;
      done = true;
      stats.observeSeconds(Number(process.hrtime.bigint() - startNs) / 1e9);
      stats.countHandled(status[code] ?? String(code));
    };
  };
}

type AnyCallback = (error: unknown, value?: unknown, trailer?: unknown, flags?: unknown) => void;

/** Unary and client-streaming: both answer through a callback. */
function wrapCallbackHandler(
  handler: (call: unknown, callback: AnyCallback) => unknown,
  ctx: InstrumentContext,
  recorder: Recorder,
  path: string,
): UntypedHandleCall {
  return ((call: unknown, callback: AnyCallback) => {
    const record = recorder();
    let answered = false;
    const reply: AnyCallback = (error, value, trailer, flags) => {
      if (answered) return;
      answered = true;
      if (error) {
        const mapped = toGrpcError(error, ctx.logger, path);
        record(mapped.code as status);
        callback(mapped);
      } else {
        record(status.OK);
        callback(null, value, trailer, flags);
      }
    };
    try {
      const result = handler(call, reply);
      if (result instanceof Promise) result.catch((err: unknown) => reply(err));
    } catch (err) {
      reply(err);
    }
  }) as UntypedHandleCall;
}

interface EmitterCall {
  emit(event: string | symbol, ...args: unknown[]): boolean;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
}

/** Server- and bidi-streaming: errors are sent with `call.emit("error", err)`; success is `end()`. */
function wrapStreamHandler(
  handler: (call: unknown) => unknown,
  ctx: InstrumentContext,
  recorder: Recorder,
  path: string,
): UntypedHandleCall {
  return ((call: EmitterCall) => {
    const record = recorder();
    const originalEmit = call.emit.bind(call);
    // grpc-js turns an emitted "error" into the call's status; map it first so nothing leaks.
    call.emit = (event: string | symbol, ...args: unknown[]) => {
      if (event !== "error") return originalEmit(event, ...args);
      const mapped = toGrpcError(args[0], ctx.logger, path);
      record(mapped.code as status);
      return originalEmit("error", mapped);
    };
    call.on("finish", () => record(status.OK));
    call.on("cancelled", () => record(status.CANCELLED));
    try {
      const result = handler(call);
      if (result instanceof Promise) result.catch((err: unknown) => call.emit("error", err));
    } catch (err) {
      call.emit("error", err);
    }
  }) as UntypedHandleCall;
}

/**
 * Wrap every method of a service implementation with error mapping and metrics. Handlers may be
 * grpc-js callback style or async (see `unary`, `serverStream`, … adapters); both are covered.
 */
export function instrumentService(
  definition: ServiceDefinition,
  implementation: UntypedServiceImplementation,
  ctx: InstrumentContext,
): UntypedServiceImplementation {
  const wrapped: UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(definition)) {
    const handler = implementation[name] ?? implementation[method.originalName ?? name];
    if (handler === undefined) continue; // grpc-js answers UNIMPLEMENTED for missing methods.
    const recorder = methodRecorder(ctx, labelsOf(method as MethodDefinition<unknown, unknown>));
    const fn = handler as (...args: never[]) => unknown;
    // Responses stream (server/bidi) → status via emit("error")/end(); otherwise via a callback.
    wrapped[name] = method.responseStream
      ? wrapStreamHandler(fn as (call: unknown) => unknown, ctx, recorder, method.path)
      : wrapCallbackHandler(fn as (call: unknown, cb: AnyCallback) => unknown, ctx, recorder, method.path);
  }
  return wrapped;
}

/**
 * Adapters from async functions to grpc-js handler shapes; a thrown error becomes the call's status
 * (mapped when the service is added through the kit).
 */
export function unary<Req, Res>(
  fn: (request: Req, call: Parameters<handleUnaryCall<Req, Res>>[0]) => Promise<Res> | Res,
): handleUnaryCall<Req, Res> {
  return (call, callback) => {
    Promise.resolve()
      .then(() => fn(call.request, call))
      .then(
        (response) => callback(null, response),
        (err: unknown) => callback(err as never),
      );
  };
}

export function clientStream<Req, Res>(
  fn: (call: Parameters<handleClientStreamingCall<Req, Res>>[0]) => Promise<Res> | Res,
): handleClientStreamingCall<Req, Res> {
  return (call, callback) => {
    Promise.resolve()
      .then(() => fn(call))
      .then(
        (response) => callback(null, response),
        (err: unknown) => callback(err as never),
      );
  };
}

/** The function writes with `call.write` and returns; the kit ends the call (or sends the error). */
export function serverStream<Req, Res>(
  fn: (request: Req, call: Parameters<handleServerStreamingCall<Req, Res>>[0]) => Promise<void> | void,
): handleServerStreamingCall<Req, Res> {
  return (call) => {
    Promise.resolve()
      .then(() => fn(call.request, call))
      .then(
        () => call.end(),
        (err: unknown) => call.emit("error", err),
      );
  };
}

/** The function owns the call (reads, writes, ends it); a rejection becomes the call's status. */
export function bidiStream<Req, Res>(
  fn: (call: Parameters<handleBidiStreamingCall<Req, Res>>[0]) => Promise<void> | void,
): handleBidiStreamingCall<Req, Res> {
  return (call) => {
    Promise.resolve()
      .then(() => fn(call))
      .catch((err: unknown) => call.emit("error", err));
  };
}

/**
 * Write one message to a server or bidi stream, waiting for the transport to drain when its buffer
 * is full, so a large stream (snapshots, watch catch-up) does not pile up in memory.
 */
export function writeMessage<T>(
  call: { write(message: T): boolean; once(event: "drain" | "close", listener: () => void): unknown },
  message: T,
): Promise<void> {
  if (call.write(message)) return Promise.resolve();
  return new Promise((resolve) => {
    let settled = false;
    const done = () => {
      if (!settled) {
        settled = true;
        resolve();
      }
    };
    call.once("drain", done);
    call.once("close", done);
  });
}
