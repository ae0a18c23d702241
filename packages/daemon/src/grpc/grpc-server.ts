// A grpc-js server with the kit's standard parts: listeners on several URLs (TLS for https://),
// instrumented services, the gRPC health service, server reflection, and graceful shutdown.

import {
  type ChannelOptions,
  Server,
  ServerCredentials,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { lstatSync, mkdtempSync, readdirSync, readlinkSync, rmSync } from "node:fs";
import type { Http2Server } from "node:http2";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadSync } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation, protoPath as healthProtoPath } from "grpc-health-check";
import type { Logger } from "pino";
import type { DaemonMetrics } from "../metrics.js";
import { type DaemonUrl, grpcBindAddress, makeUrl } from "../urls.js";
import { GrpcFront } from "../h2/grpc-front.js";
import { processExists } from "../process-exists.js";
import { instrumentService } from "./instrument.js";
import { attachLeanUnary, effectiveLimits, type LeanRoute, type LeanHandler } from "./lean-unary.js";
import { ListenError } from "./listen-error.js";
import {
  clientCertificateCheck,
  grpcServerCredentials,
  httpsServerOptions,
  loadTlsMaterial,
  type TlsFiles,
  type TlsMaterial,
} from "./tls.js";

export interface GrpcServiceRegistration {
  readonly definition: ServiceDefinition;
  /** grpc-js style handlers (callback or the kit's async adapters); wrapped with mapping + metrics. */
  readonly implementation: UntypedServiceImplementation;
  /**
   * Unary methods (keys of `definition`) served by the kit's lean path instead of grpc-js's call
   * machinery (see lean-unary.ts): for hot, small calls. Same handler, same wire behaviour.
   */
  readonly leanUnaryMethods?: readonly string[];
  /**
   * Client-streaming methods served by the same lean path: the handler gets each message as a "data"
   * event and the client's half-close as "end" (no Readable surface: no iteration, no pause).
   */
  readonly leanClientStreamMethods?: readonly string[];
}

export interface GrpcServerConfig {
  readonly urls: readonly DaemonUrl[];
  /** Used for https:// URLs. */
  readonly tls?: TlsFiles;
  /** Replace the kit's credentials for a URL (e.g. iam's run-time trust roots). */
  readonly credentialsFor?: (url: DaemonUrl) => ServerCredentials | undefined;
  readonly services: readonly GrpcServiceRegistration[];
  /** The daemon's .proto files, for server reflection (the health service is added by the kit). */
  readonly protoFiles?: readonly string[];
  readonly includeDirs?: readonly string[];
  readonly maxReceiveMessageBytes?: number;
  readonly maxSendMessageBytes?: number;
  /**
   * Request bytes the lean calls of one client connection may hold at once (see
   * LeanLimits.connectionRequestBytesMax): 64 MiB, or one largest message if that is more, unless given.
   */
  readonly maxConnectionRequestBytes?: number;
  /** Other grpc-js channel options. */
  readonly channelOptions?: ChannelOptions;
  /**
   * Server keepalive, as grpc-go's (etcd's --grpc-keepalive-interval and -timeout): a client
   * connection silent for `intervalMs` is pinged, and dropped when still silent `timeoutMs` later.
   */
  readonly keepalive?: { readonly intervalMs: number; readonly timeoutMs: number };
  /** Most concurrent streams a client connection may open (SETTINGS_MAX_CONCURRENT_STREAMS). */
  readonly maxConcurrentStreams?: number;
  readonly logger: Logger;
  readonly metrics?: DaemonMetrics;
  /** How long in-flight calls get to finish at shutdown before they are cancelled. Default 5000. */
  readonly shutdownTimeoutMs?: number;
  /** How the URL list is named in messages, e.g. `--listen-client-urls`. */
  readonly what?: string;
  /**
   * Takes the connections of fronted listeners that speak HTTP/1.x instead of HTTP/2 (etcd serves
   * /health, /version and /metrics on its client URLs so): see GrpcFrontConfig.http1.
   */
  readonly http1?: (socket: Socket) => void;
  /**
   * Serves fronted listeners' HTTP/2 requests that are not gRPC (no `application/grpc` content
   * type): listened on a private Unix socket while the server runs (see HandedOverHttp.h2).
   */
  readonly http2?: Http2Server;
}

export interface RunningGrpcServer {
  readonly server: Server;
  /** The listen URLs with the ports actually bound (port 0 replaced). */
  readonly urls: readonly DaemonUrl[];
  readonly health: HealthImplementation;
  /** Fully-qualified names of the added services, e.g. `etcdserverpb.KV`. */
  readonly serviceNames: readonly string[];
  /** Set one service's health ("" is the whole server). */
  setServing(serviceName: string, serving: boolean): void;
  /** NOT_SERVING everywhere, let calls finish until the deadline, then cancel the rest. */
  shutdown(): Promise<void>;
}

/** The fully-qualified service name from a definition's method paths (`/pkg.Svc/Method`). */
export function serviceNameOf(definition: ServiceDefinition): string {
  const first = Object.values(definition)[0];
  if (first === undefined) throw new TypeError("service definition has no methods");
  return first.path.split("/")[1]!;
}

/** Binds grpc-js to `address`; resolves with the port bound. `href` names the listener in errors. */
function bindOne(
  server: Server,
  address: string,
  credentials: ServerCredentials,
  href: string,
  what: string,
): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, credentials, (err, port) => {
      if (err) reject(new ListenError(href, err.message, what));
      else resolve(port);
    });
  });
}

/** How one listen URL is served: the daemon's own credentials, the kit's TLS material, or neither. */
interface Listener {
  readonly url: DaemonUrl;
  readonly custom: ServerCredentials | undefined;
  readonly tls: TlsMaterial | undefined;
  /** Served by the kit's HTTP/2 front rather than by grpc-js directly. */
  readonly fronted: boolean;
}

function grpcCredentials(l: Listener): ServerCredentials {
  if (l.custom !== undefined) return l.custom;
  return l.tls === undefined ? ServerCredentials.createInsecure() : grpcServerCredentials(l.tls);
}

function addReflection(server: Server, config: GrpcServerConfig): void {
  const files = [...(config.protoFiles ?? []), healthProtoPath];
  const definition = loadSync(files, {
    includeDirs: [...(config.includeDirs ?? [])],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  new ReflectionService(definition).addToServer(server);
}

/** Create, populate and bind a gRPC server. Resolves once every URL is listening. */
export async function startGrpcServer(config: GrpcServerConfig): Promise<RunningGrpcServer> {
  const what = config.what ?? "gRPC listener";
  const perConnection = config.maxConnectionRequestBytes;
  if (perConnection !== undefined && !(Number.isSafeInteger(perConnection) && perConnection > 0))
    throw new Error(
      `maxConnectionRequestBytes must be a positive whole number of bytes, got ${perConnection}`,
    );
  // Listeners with lean methods get the kit's own HTTP/2 front (../h2/grpc-front.ts), unless their
  // credentials are the daemon's own (handlers there may need the caller's TLS identity).
  // PHOTON_GRPC_FRONT=0 leaves every listener to grpc-js (to compare, or to rule the front out).
  const frontWanted =
    config.services.some(
      (s) => (s.leanUnaryMethods?.length ?? 0) + (s.leanClientStreamMethods?.length ?? 0) > 0,
    ) && process.env.PHOTON_GRPC_FRONT !== "0";
  const options: ChannelOptions = {
    "grpc.max_receive_message_length": config.maxReceiveMessageBytes ?? 4 * 1024 * 1024,
    "grpc.max_send_message_length": config.maxSendMessageBytes ?? 4 * 1024 * 1024,
    // For listeners grpc-js serves itself. Behind the front its clients are the front's own
    // sessions over a Unix socket (the front keeps the client connections alive): no pings there,
    // where a stalled event loop would look like a dead peer.
    ...(config.keepalive === undefined || (frontWanted && config.credentialsFor === undefined)
      ? {}
      : {
          "grpc.keepalive_time_ms": config.keepalive.intervalMs,
          "grpc.keepalive_timeout_ms": config.keepalive.timeoutMs,
        }),
    ...(config.maxConcurrentStreams === undefined
      ? {}
      : { "grpc.max_concurrent_streams": config.maxConcurrentStreams }),
    ...config.channelOptions,
  };
  const server = new Server(options);
  const ctx = { logger: config.logger.child({ component: "grpc" }), metrics: config.metrics };
  const serviceNames = config.services.map((s) => serviceNameOf(s.definition));
  const lean = new Map<string, LeanRoute>();
  for (const service of config.services) {
    const implementation = instrumentService(service.definition, service.implementation, ctx);
    server.addService(service.definition, implementation);
    const named = [
      ...(service.leanUnaryMethods ?? []).map((name) => ({ name, list: "leanUnaryMethods", stream: false })),
      ...(service.leanClientStreamMethods ?? []).map((name) => ({
        name,
        list: "leanClientStreamMethods",
        stream: true,
      })),
    ];
    for (const { name, list, stream } of named) {
      const method = service.definition[name];
      const where = `${list} of ${serviceNameOf(service.definition)}`;
      if (method === undefined) throw new Error(`${where}: ${name} is not one of its methods`);
      if (method.requestStream !== stream || method.responseStream)
        throw new Error(`${where}: ${name} is not ${stream ? "client-streaming" : "unary"}`);
      lean.set(method.path, { method, handler: implementation[name] as unknown as LeanHandler });
    }
  }
  // PHOTON_GRPC_LEAN_UNARY=0 serves every method through grpc-js (to compare, or to rule the lean path out).
  if (process.env.PHOTON_GRPC_LEAN_UNARY === "0") lean.clear();
  const health = new HealthImplementation({
    "": "SERVING",
    ...Object.fromEntries(serviceNames.map((n) => [n, "SERVING" as const])),
  });
  health.addToServer(server);
  addReflection(server, config);

  const limits = effectiveLimits({
    maxReceiveMessageBytes: Number(options["grpc.max_receive_message_length"]),
    maxSendMessageBytes: Number(options["grpc.max_send_message_length"]),
    ...(perConnection === undefined ? {} : { connectionRequestBytesMax: perConnection }),
  });
  // Everything is read and checked before anything listens (a config error names its flag).
  const listeners: Listener[] = config.urls.map((url) => {
    const custom = config.credentialsFor?.(url);
    const tls =
      custom === undefined && url.tls
        ? loadTlsMaterial(config.tls ?? {}, `${what} (${url.href})`)
        : undefined;
    return { url, custom, tls, fronted: frontWanted && custom === undefined };
  });
  const bound: DaemonUrl[] = [];
  const fronts: GrpcFront[] = [];
  let fallbackDir: string | null = null;
  let httpSocketPath: string | null = null;
  try {
    if (listeners.some((l) => l.fronted)) {
      fallbackDir = makePrivateFolder();
      const fallbackSocketPath = join(fallbackDir, "grpc.sock");
      const address = `unix:${fallbackSocketPath}`;
      await bindOne(server, address, ServerCredentials.createInsecure(), address, what);
      if (config.http2 !== undefined) {
        httpSocketPath = join(fallbackDir, "http.sock");
        await listenUnix(config.http2, httpSocketPath);
      }
      for (const [i, l] of listeners.entries()) {
        if (!l.fronted) continue;
        const tls = l.tls === undefined ? undefined : httpsServerOptions(l.tls);
        const check = l.tls === undefined ? undefined : clientCertificateCheck(l.tls);
        const front = new GrpcFront({
          routes: lean,
          limits,
          fallbackSocketPath,
          ...(httpSocketPath !== null ? { httpSocketPath } : {}),
          ...(tls ? { tls } : {}),
          ...(check ? { clientCertificateCheck: check } : {}),
          ...(config.http1 ? { http1: config.http1 } : {}),
          connection: {
            ...(config.maxConcurrentStreams === undefined
              ? {}
              : { maxConcurrentStreams: config.maxConcurrentStreams }),
            ...(config.keepalive === undefined
              ? {}
              : {
                  keepaliveIntervalMs: config.keepalive.intervalMs,
                  keepaliveTimeoutMs: config.keepalive.timeoutMs,
                }),
          },
        });
        fronts.push(front);
        const port = await front.listen(l.url.host, l.url.port).catch((err: Error) => {
          throw new ListenError(l.url.href, err.message, what);
        });
        bound[i] = makeUrl(l.url.scheme, l.url.host, port);
      }
    }
    for (const [i, l] of listeners.entries()) {
      if (l.fronted) continue;
      const port = await bindOne(server, grpcBindAddress(l.url), grpcCredentials(l), l.url.href, what);
      bound[i] = makeUrl(l.url.scheme, l.url.host, port);
    }
    attachLeanUnary(server, lean, limits);
  } catch (err) {
    server.forceShutdown();
    for (const f of fronts) void f.close(0);
    if (httpSocketPath !== null) config.http2?.close();
    if (fallbackDir !== null) removePrivateFolder(fallbackDir);
    throw err;
  }
  ctx.logger.info({ urls: bound.map((u) => u.href), services: serviceNames }, "gRPC server listening");
  return {
    server,
    urls: bound,
    health,
    serviceNames,
    setServing: (name, serving) => health.setStatus(name, serving ? "SERVING" : "NOT_SERVING"),
    shutdown: async () => {
      const timeoutMs = config.shutdownTimeoutMs ?? 5000;
      await Promise.all([
        shutdownGrpc(server, health, ["", ...serviceNames], timeoutMs),
        ...fronts.map((f) => f.close(timeoutMs)),
      ]);
      // The fronts' sessions to it are gone: nothing holds its close.
      if (httpSocketPath !== null) await new Promise<void>((resolve) => config.http2!.close(() => resolve()));
      if (fallbackDir !== null) removePrivateFolder(fallbackDir);
    },
  };
}

function listenUnix(server: Http2Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

/**
 * The private folders of this process's fronted servers (each holds the Unix socket grpc-js listens
 * on). A server's shutdown removes its own; a process that exits without shutting its servers down
 * (a startup error after listening, `process.exit` in a signal handler) removes them on its way out.
 * A SIGKILL leaves its folder (and the socket file in it) behind: each folder's name carries the
 * process ID that made it and its PID namespace, and the next server started in that namespace
 * removes the folders of processes that no longer exist. (A process of another PID namespace
 * sharing the directory, as containers sharing /tmp do, may have a PID this one sees as free:
 * its folders are left alone.)
 */
const privateFolders = new Set<string>();
const FOLDER_PREFIX = "photon-grpc-";
/** `photon-grpc-<PID namespace>.<pid>-` and mkdtemp's six characters. */
const FOLDER_NAME = /^photon-grpc-(\d+)\.(\d+)-[A-Za-z0-9]{6}$/;
let leftoversSwept = false;

function removePrivateFolders(): void {
  for (const dir of privateFolders) rmSync(dir, { recursive: true, force: true });
  privateFolders.clear();
}

function makePrivateFolder(): string {
  if (!leftoversSwept) {
    leftoversSwept = true;
    removeFoldersOfGoneProcesses(tmpdir());
  }
  // mkdtemp makes the directory private to this user: only the fronts reach the socket.
  const dir = mkdtempSync(join(tmpdir(), `${FOLDER_PREFIX}${pidNamespace()}.${process.pid}-`));
  if (privateFolders.size === 0) process.once("exit", removePrivateFolders);
  privateFolders.add(dir);
  return dir;
}

/**
 * Removes the folders in `parent` of this PID namespace's processes that are gone (signal 0 answers
 * ESRCH) and that this user owns. A folder of a live process, of another user or PID namespace, or
 * named otherwise is kept.
 * Best effort: a folder that cannot be read or removed is left as it is.
 */
function removeFoldersOfGoneProcesses(parent: string): void {
  let names: string[];
  try {
    names = readdirSync(parent);
  } catch {
    return;
  }
  const uid = process.getuid?.();
  for (const name of names) {
    const owner = FOLDER_NAME.exec(name);
    if (owner === null || owner[1] !== pidNamespace()) continue;
    const pid = Number(owner[2]);
    if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid || processExists(pid)) continue;
    const dir = join(parent, name);
    try {
      const st = lstatSync(dir);
      if (!st.isDirectory() || (uid !== undefined && st.uid !== uid)) continue;
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // Gone already, or not ours to remove.
    }
  }
}

let ownPidNamespace: string | undefined;

/** The inode of this process's PID namespace (Linux), or "0" where there is none to read. */
function pidNamespace(): string {
  if (ownPidNamespace === undefined) {
    try {
      ownPidNamespace = /\[(\d+)\]/.exec(readlinkSync("/proc/self/ns/pid"))?.[1] ?? "0";
    } catch {
      ownPidNamespace = "0";
    }
  }
  return ownPidNamespace;
}

function removePrivateFolder(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  privateFolders.delete(dir);
  if (privateFolders.size === 0) process.removeListener("exit", removePrivateFolders);
}

function shutdownGrpc(
  server: Server,
  health: HealthImplementation,
  names: string[],
  timeoutMs: number,
): Promise<void> {
  for (const name of names) health.setStatus(name, "NOT_SERVING");
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, timeoutMs);
    timer.unref();
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
