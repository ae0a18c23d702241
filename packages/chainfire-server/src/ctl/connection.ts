// Connecting to chainfire (or etcd) endpoints: endpoint parsing, TLS credentials from etcdctl's
// flags, one client set per endpoint, and unary calls with a deadline whose gRPC failures become
// CtlErrors that say which endpoint failed and why.
import { readFileSync } from "node:fs";
import {
  type CallOptions,
  type ChannelCredentials,
  credentials,
  Metadata,
  type ServiceError,
  status,
} from "@grpc/grpc-js";
import { type ChainfireClients, createClients } from "@photoncloud/chainfire-api";
import { parseGoDurationMs } from "@photoncloud/daemon";
import { rangeRequest } from "../mvcc/messages.js";
import { badArgument, CtlError } from "./errors.js";

export interface GlobalOptions {
  endpoints: string;
  writeOut: "simple" | "table" | "json";
  cacert?: string;
  cert?: string;
  key?: string;
  dialTimeout: string;
  commandTimeout: string;
  /** Keys and values printed as `\x..` bytes (etcdctl's --hex). */
  hex?: boolean;
  /** etcdctl's --insecure-skip-tls-verify: TLS without checking the server's certificate. */
  insecureSkipTlsVerify?: boolean;
  /** etcdctl's --insecure-transport (default true); false asks for TLS even without --cacert. */
  insecureTransport?: boolean;
  keepaliveTime?: string;
  keepaliveTimeout?: string;
  /** `name[:password]`, authenticated once the first endpoint connects. */
  user?: string;
  password?: string;
}

export interface Endpoint {
  /** host:port as dialled. */
  readonly address: string;
  readonly tls: boolean;
  /** As given (with its scheme, if it had one): how etcdctl prints an endpoint in its reports. */
  readonly given: string;
}

export function parseEndpoints(text: string): Endpoint[] {
  const parts = text
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p !== "");
  if (parts.length === 0) throw badArgument("--endpoints is empty; give host:port[,host:port...]");
  return parts.map((part) => {
    const match = /^(?:(https?):\/\/)?([^/\s]+?:\d{1,5})\/?$/.exec(part);
    if (!match) {
      throw badArgument(
        `--endpoints: "${part}" is not host:port or http(s)://host:port (e.g. 127.0.0.1:2379)`,
      );
    }
    return { address: match[2]!, tls: match[1] === "https", given: part };
  });
}

/** Durations as etcdctl takes them (Go's): "5s", "500ms", "1m30s"; a bare number other than 0 needs its unit. */
export function parseDurationMs(text: string, flag: string): number {
  const ms = parseGoDurationMs(text);
  if (ms === undefined)
    throw badArgument(`${flag}: "${text}" is not a duration with its unit (e.g. 5s, 500ms, 1m30s)`);
  return ms;
}

function readPem(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw badArgument(`${flag}: cannot read ${path}: ${(err as Error).message}`);
  }
}

export function channelCredentials(opts: GlobalOptions, endpoint: Endpoint): ChannelCredentials {
  if ((opts.cert === undefined) !== (opts.key === undefined)) {
    throw badArgument("--cert and --key go together: give both for client-certificate authentication");
  }
  const wantsTls =
    endpoint.tls || opts.cacert !== undefined || opts.cert !== undefined || opts.insecureTransport === false;
  if (!wantsTls) return credentials.createInsecure();
  return credentials.createSsl(
    opts.cacert ? readPem(opts.cacert, "--cacert") : null,
    opts.key ? readPem(opts.key, "--key") : null,
    opts.cert ? readPem(opts.cert, "--cert") : null,
    opts.insecureSkipTlsVerify === true ? { rejectUnauthorized: false } : {},
  );
}

/**
 * The user and password of --user and --password, as etcdctl reads them: none without --user
 * (a lone --password is ignored); with a non-empty --password, --user is the name as written;
 * otherwise `name:password` is split at the first colon. Where etcdctl would prompt for a missing
 * password the password is empty (chainfire has no authentication to give it to).
 */
export function credentialsOf(opts: GlobalOptions): { name: string; password: string } | null {
  if (opts.user === undefined || opts.user === "") return null;
  if (opts.password !== undefined && opts.password !== "")
    return { name: opts.user, password: opts.password };
  const colon = opts.user.indexOf(":");
  if (colon < 0) return { name: opts.user, password: "" };
  return { name: opts.user.slice(0, colon), password: opts.user.slice(colon + 1) };
}

/** grpc-go, which etcdctl uses, never pings more often than this, whatever --keepalive-time says. */
const KEEPALIVE_TIME_MIN_MS = 10_000;

export class Connection {
  readonly endpoints: Endpoint[];
  readonly commandTimeoutMs: number;
  readonly dialTimeoutMs: number;
  private readonly open = new Map<string, ChainfireClients>();
  private readonly dialled = new Map<string, Promise<void>>();
  private chosen: Promise<Endpoint> | undefined;
  private readonly channelOptions: Record<string, number>;
  private readonly user: { name: string; password: string } | null;
  /** The token Authenticate gave, sent with every call; none while authentication is off. */
  private token: string | null = null;

  constructor(readonly options: GlobalOptions) {
    this.endpoints = parseEndpoints(options.endpoints);
    this.commandTimeoutMs = parseDurationMs(options.commandTimeout, "--command-timeout");
    this.dialTimeoutMs = parseDurationMs(options.dialTimeout, "--dial-timeout");
    this.user = credentialsOf(options);
    this.channelOptions = {
      // As etcdctl (math.MaxInt32): an answer of any size is taken.
      "grpc.max_receive_message_length": -1,
      // A member that restarts is dialled again within a second (a watch waits for it).
      "grpc.initial_reconnect_backoff_ms": 100,
      "grpc.max_reconnect_backoff_ms": 1000,
    };
    // etcdctl's keepalive (2 s, raised to grpc-go's 10-s floor, and 6 s): a member whose host is
    // gone without a reset is noticed, and a watch moves on from it. As etcdctl, a time of 0 turns
    // the pings off, and a timeout of 0 is grpc-go's 20 s.
    const keepaliveMs = parseDurationMs(options.keepaliveTime ?? "2s", "--keepalive-time");
    const timeoutMs = parseDurationMs(options.keepaliveTimeout ?? "6s", "--keepalive-timeout");
    if (keepaliveMs > 0) {
      this.channelOptions["grpc.keepalive_time_ms"] = Math.max(keepaliveMs, KEEPALIVE_TIME_MIN_MS);
      this.channelOptions["grpc.keepalive_timeout_ms"] = timeoutMs > 0 ? timeoutMs : 20_000;
    }
  }

  clients(endpoint: Endpoint = this.endpoints[0]!): ChainfireClients {
    let clients = this.open.get(endpoint.address);
    if (!clients) {
      clients = createClients(
        endpoint.address,
        channelCredentials(this.options, endpoint),
        this.channelOptions,
      );
      this.open.set(endpoint.address, clients);
    }
    return clients;
  }

  /**
   * Resolves once the endpoint's channel is connected, within --dial-timeout, so an unreachable
   * endpoint fails fast with a connection error instead of waiting out --command-timeout.
   */
  ready(endpoint: Endpoint = this.endpoints[0]!): Promise<void> {
    let pending = this.dialled.get(endpoint.address);
    if (!pending) {
      const client = this.clients(endpoint).kv;
      pending = new Promise<void>((resolve, reject) => {
        client.waitForReady(Date.now() + this.dialTimeoutMs, (err) => {
          if (!err) return resolve();
          // waitForReady only says "deadline": one fail-fast probe carries the channel's real
          // reason (refused, TLS alert, unknown host) into the message.
          client.range(
            rangeRequest({ key: Buffer.from("dial-probe") }),
            new Metadata(),
            { deadline: Date.now() + 1000 },
            (probe) => {
              const why = probe ? fromGrpc(probe, endpoint).message : err.message;
              reject(
                new CtlError(
                  "UNREACHABLE",
                  `${why} (no connection within --dial-timeout=${this.options.dialTimeout})`,
                ),
              );
            },
          );
        });
      });
      this.dialled.set(endpoint.address, pending);
    }
    return pending;
  }

  /**
   * The first endpoint, in --endpoints order, that connects within --dial-timeout, as etcdctl's
   * client moves on from an endpoint that is down. Nothing has been sent to the ones skipped, so a
   * write is never sent twice. When none connects, the first endpoint's error.
   */
  primary(): Promise<Endpoint> {
    this.chosen ??= (async () => {
      let firstError: unknown;
      for (const endpoint of this.endpoints) {
        try {
          await this.ready(endpoint);
        } catch (err) {
          firstError ??= err;
          continue;
        }
        await this.authenticate(endpoint);
        return endpoint;
      }
      throw firstError;
    })();
    return this.chosen;
  }

  /**
   * With --user: asks for a token as etcd's clients do, and goes on without one when the server
   * answers that authentication is not enabled (chainfire's answer: it has no authentication).
   */
  private async authenticate(endpoint: Endpoint): Promise<void> {
    if (this.user === null) return;
    const auth = this.clients(endpoint).auth;
    try {
      const res = await call(this, endpoint, auth.authenticate.bind(auth), this.user);
      this.token = res.token;
    } catch (err) {
      if (err instanceof CtlError && /authentication is not enabled/.test(err.message)) return;
      throw err;
    }
  }

  /** The metadata every call carries: the auth token, when there is one. */
  metadata(): Metadata {
    const metadata = new Metadata();
    if (this.token !== null) metadata.set("token", this.token);
    return metadata;
  }

  /**
   * For a stream cut off with its member (watch): the next endpoint after `from`, in --endpoints
   * order and round again, that connects within --dial-timeout, asked until one does, as etcd's
   * client waits for any endpoint to come back. Null once `signal` aborts.
   */
  async reconnect(from: Endpoint, signal?: AbortSignal): Promise<Endpoint | null> {
    const start = this.endpoints.findIndex((e) => e.address === from.address);
    for (let round = 0; ; round++) {
      for (let i = 1; i <= this.endpoints.length; i++) {
        const endpoint = this.endpoints[(start + i) % this.endpoints.length]!;
        if (signal?.aborted) return null;
        if (await this.connects(endpoint, signal)) return endpoint;
      }
      // Every endpoint refused at once (none is listening): wait a little before the next round.
      if (!(await this.pause(Math.min(100 * 2 ** round, 1000), signal))) return null;
    }
  }

  /** Resolves true after `ms`, or false as soon as `signal` aborts. */
  pause(ms: number, signal?: AbortSignal): Promise<boolean> {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve(false);
      const timer = setTimeout(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve(true);
      }, ms);
      const onAbort = () => {
        clearTimeout(timer);
        resolve(false);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Whether the endpoint's channel connects within --dial-timeout (or before `signal` aborts). */
  private connects(endpoint: Endpoint, signal?: AbortSignal): Promise<boolean> {
    const client = this.clients(endpoint).kv;
    return new Promise((resolve) => {
      const onAbort = () => resolve(false);
      signal?.addEventListener("abort", onAbort, { once: true });
      client.waitForReady(Date.now() + this.dialTimeoutMs, (err) => {
        signal?.removeEventListener("abort", onAbort);
        resolve(err === undefined || err === null);
      });
    });
  }

  deadline(): Date {
    return new Date(Date.now() + this.commandTimeoutMs);
  }

  close(): void {
    for (const clients of this.open.values()) clients.close();
    this.open.clear();
  }
}

type UnaryMethod<Req, Res> = (
  req: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (err: ServiceError | null, res: Res) => void,
) => unknown;

/** Calls a generated unary method with the command deadline; failures become CtlErrors. */
export function call<Req, Res>(
  conn: Connection,
  endpoint: Endpoint,
  method: UnaryMethod<Req, Res>,
  req: Req,
): Promise<Res> {
  return conn.ready(endpoint).then(
    () =>
      new Promise<Res>((resolve, reject) => {
        method(req, conn.metadata(), { deadline: conn.deadline() }, (err, res) =>
          err ? reject(fromGrpc(err, endpoint)) : resolve(res),
        );
      }),
  );
}

/**
 * Calls a unary method on the endpoint the command goes to (Connection.primary), picked from that
 * endpoint's clients, e.g. `(c) => c.kv.put.bind(c.kv)`.
 */
export async function callPrimary<Req, Res>(
  conn: Connection,
  pick: (clients: ChainfireClients) => UnaryMethod<Req, Res>,
  req: Req,
): Promise<Res> {
  const endpoint = await conn.primary();
  return call(conn, endpoint, pick(conn.clients(endpoint)), req);
}

/** Turns a gRPC failure into what an operator needs: which endpoint, and the server's own words. */
export function fromGrpc(err: ServiceError, endpoint: Endpoint): CtlError {
  if (err.code === status.UNAVAILABLE && /connect|No connection|ECONNREFUSED/i.test(err.details)) {
    return new CtlError("UNREACHABLE", `cannot reach ${endpoint.address}: ${err.details}`);
  }
  if (err.code === status.DEADLINE_EXCEEDED) {
    return new CtlError(
      "UNREACHABLE",
      `${endpoint.address} did not answer in time (deadline exceeded); check the endpoint or raise --command-timeout`,
    );
  }
  return new CtlError("SERVER_ERROR", err.details || status[err.code] || "unknown server error");
}
