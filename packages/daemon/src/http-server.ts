// The daemon's HTTP side: /metrics (Prometheus), /health (JSON, 200 or 503), /version, and routes
// the daemon adds (e.g. iam's /.well-known/jwks.json). One handler, several listeners.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { createServer as createH2cServer, type Http2Server } from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import type { Logger } from "pino";
import { ListenError } from "./grpc/listen-error.js";
import { clientCertificateCheck, httpsServerOptions, loadTlsMaterial, type TlsFiles } from "./grpc/tls.js";
import type { DaemonMetrics } from "./metrics.js";
import { type DaemonUrl, makeUrl } from "./urls.js";

export interface HealthReport {
  readonly healthy: boolean;
  /** Anything useful to an operator (leader, raft term, ...). Must not contain secrets. */
  readonly [detail: string]: unknown;
}

export type HttpRouteHandler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

export interface HttpServerConfig {
  readonly urls: readonly DaemonUrl[];
  readonly tls?: TlsFiles;
  readonly metrics?: DaemonMetrics;
  /** Backs /health: 200 when healthy, 503 otherwise. Default: always healthy. */
  readonly health?: () => HealthReport | Promise<HealthReport>;
  /** Served as JSON on /version. */
  readonly version?: Record<string, string>;
  /** Extra GET routes by exact path. */
  readonly routes?: Readonly<Record<string, HttpRouteHandler>>;
  /** Routes by exact path that take any method and check it themselves (e.g. POST APIs). */
  readonly anyMethodRoutes?: Readonly<Record<string, HttpRouteHandler>>;
  readonly logger: Logger;
  /** How the URL list is named in messages, e.g. `--listen-http-urls`. */
  readonly what?: string;
  /**
   * Runs before any route (etcd's access control: CORS headers, the host whitelist). `secure`
   * says whether the client's connection is TLS (a forwarded HTTP/2 request included). Returns
   * false when it has answered the request itself.
   */
  readonly beforeRoute?: (req: IncomingMessage, res: ServerResponse, secure: boolean) => boolean;
  /**
   * Answer as Go's net/http and etcd's handlers do: an unknown path gets `404 page not found` as
   * text, /metrics takes any method, and the other routes only GET (`Method Not Allowed` with
   * `Allow: GET` otherwise, HEAD included). Default: JSON errors, GET and HEAD taken.
   */
  readonly goHttpAnswers?: boolean;
}

/** Go's http.Error: a plain-text answer ending in a newline. */
function sendGoError(
  res: ServerResponse,
  statusCode: number,
  text: string,
  headers: Record<string, string> = {},
): void {
  res.writeHead(statusCode, {
    "content-type": "text/plain; charset=utf-8",
    "x-content-type-options": "nosniff",
    ...headers,
  });
  res.end(`${text}\n`);
}

export interface RunningHttpServer {
  /** The listen URLs with the ports actually bound. */
  readonly urls: readonly DaemonUrl[];
  close(): Promise<void>;
}

/** Write a JSON response. */
export function sendJson(res: ServerResponse, statusCode: number, body: unknown): void {
  const text = JSON.stringify(body, (_k, v) => (typeof v === "bigint" ? v.toString() : v));
  res.writeHead(statusCode, { "content-type": "application/json", "cache-control": "no-store" });
  res.end(text);
}

function builtinRoutes(config: HttpServerConfig): Record<string, HttpRouteHandler> {
  return {
    "/metrics": async (_req, res) => {
      if (config.metrics === undefined) return sendJson(res, 404, { error: "metrics are not enabled" });
      const text = await config.metrics.registry.metrics();
      res.writeHead(200, { "content-type": config.metrics.registry.contentType });
      res.end(text);
    },
    "/health": async (_req, res) => {
      const report = config.health ? await config.health() : { healthy: true };
      sendJson(res, report.healthy ? 200 : 503, report);
    },
    "/version": (_req, res) => sendJson(res, 200, config.version ?? {}),
  };
}

function makeHandler(config: HttpServerConfig, logger: Logger) {
  const routes = { ...builtinRoutes(config), ...config.routes };
  return (req: IncomingMessage, res: ServerResponse) => {
    if (config.beforeRoute !== undefined) {
      // TLS on the socket (HTTP/1.x handed over by the front, or a listener's own), or an HTTP/2
      // request the front forwarded from a TLS connection (it sets the scheme itself).
      const secure =
        (req.socket as { encrypted?: boolean }).encrypted === true ||
        (req as { scheme?: string }).scheme === "https";
      if (!config.beforeRoute(req, res, secure)) return;
    }
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    const anyMethod = config.anyMethodRoutes?.[path];
    const route = anyMethod ?? routes[path];
    if (config.goHttpAnswers) {
      if (route === undefined) return sendGoError(res, 404, "404 page not found");
      if (anyMethod === undefined && path !== "/metrics" && req.method !== "GET")
        return sendGoError(res, 405, "Method Not Allowed", { allow: "GET" });
    } else {
      if (route === undefined) return sendJson(res, 404, { error: `no route ${path}` });
      if (anyMethod === undefined && req.method !== "GET" && req.method !== "HEAD")
        return sendJson(res, 405, { error: "use GET" });
    }
    Promise.resolve()
      .then(() => route(req, res))
      .catch((err: unknown) => {
        logger.error({ err, path }, "HTTP handler failed");
        if (!res.headersSent) sendJson(res, 500, { error: "internal error" });
        else res.destroy();
      });
  };
}

function listenOne(server: Server, url: DaemonUrl, what: string): Promise<DaemonUrl> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) =>
      reject(new ListenError(url.href, err.code ?? err.message, what));
    server.once("error", onError);
    server.listen(url.port, url.host, () => {
      server.off("error", onError);
      resolve(makeUrl(url.scheme, url.host, (server.address() as AddressInfo).port));
    });
  });
}

/** Keep-alive connections idle out at once; busy ones get this long to finish their response. */
const CLOSE_GRACE_MS = 2000;

const KEEP_ALIVE_MS = 65_000;

function closeOne(server: Server): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
    timer.unref();
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    server.closeIdleConnections();
  });
}

/** HTTP connections and requests another listener hands over (see GrpcServerConfig.http1/http2). */
export interface HandedOverHttp {
  /** Serves the routes on `socket`, whose unread bytes begin the first request. */
  accept(socket: Socket): void;
  /**
   * The same routes for HTTP/2 requests that are not gRPC (`curl https://…/health` negotiates
   * HTTP/2): a cleartext HTTP/2 server that does not listen; the gRPC server listening on that
   * port has it listen on a private Unix socket and forwards such requests there.
   */
  readonly h2: Http2Server;
  /** Closes the connections it was handed (probes and scrapes: short requests). */
  close(): void;
}

/** The same routes as startHttpServer, for connections a gRPC port takes and hands over. */
export function handedOverHttp(config: Omit<HttpServerConfig, "urls" | "tls" | "what">): HandedOverHttp {
  const logger = config.logger.child({ component: "http" });
  const handler = makeHandler({ ...config, urls: [] }, logger);
  const server = createServer(handler);
  // Node's HTTP/2 compatibility objects have the methods the routes use (writeHead, end, ...).
  const h2 = createH2cServer(handler as never);
  server.keepAliveTimeout = KEEP_ALIVE_MS;
  // headersTimeout and requestTimeout are enforced only for a server that listens: an inactivity
  // timeout on each socket stands in for them (a request cut short is closed).
  server.timeout = KEEP_ALIVE_MS + 1000;
  // The server never listens, so Node does not track these connections for it.
  const sockets = new Set<Socket>();
  return {
    h2,
    accept: (socket) => {
      sockets.add(socket);
      socket.once("close", () => sockets.delete(socket));
      server.emit("connection", socket);
    },
    close: () => {
      for (const socket of sockets) socket.destroy();
      sockets.clear();
    },
  };
}

/** Start one listener per URL (TLS for https://). Resolves once all are listening. */
export async function startHttpServer(config: HttpServerConfig): Promise<RunningHttpServer> {
  const what = config.what ?? "HTTP listener";
  const logger = config.logger.child({ component: "http" });
  const handler = makeHandler(config, logger);
  const servers: Server[] = [];
  const bound: DaemonUrl[] = [];
  try {
    for (const url of config.urls) {
      const material = url.tls ? loadTlsMaterial(config.tls ?? {}, `${what} (${url.href})`) : undefined;
      const server =
        material === undefined
          ? createServer(handler)
          : createHttpsServer(httpsServerOptions(material), handler);
      // The client certificate checks beyond the chain (revocation list, allowed name) hold here too.
      const check = material === undefined ? undefined : clientCertificateCheck(material);
      if (check !== undefined)
        server.on("secureConnection", (socket: TLSSocket) => {
          if (!check(socket.getPeerCertificate(true))) socket.destroy();
        });
      // Idle keep-alive connections outlive any client's idle timeout (Node's 5 s default is shorter
      // than some clients', which then reuse a socket the server has just closed).
      server.keepAliveTimeout = KEEP_ALIVE_MS;
      server.headersTimeout = KEEP_ALIVE_MS + 1000;
      servers.push(server);
      bound.push(await listenOne(server, url, what));
    }
  } catch (err) {
    await Promise.all(servers.map(closeOne));
    throw err;
  }
  logger.info({ urls: bound.map((u) => u.href) }, "HTTP server listening");
  return {
    urls: bound,
    close: async () => {
      await Promise.all(servers.map(closeOne));
    },
  };
}
