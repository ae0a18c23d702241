// `endpoint status|health`: asks EACH endpoint on its own (never through a balancer), so an operator
// sees every member's view; one failing endpoint is reported and makes the exit status non-zero.
import { etcd } from "@photoncloud/chainfire-api";
import { rangeRequest } from "../../mvcc/messages.js";
import { type Connection, call, type Endpoint, parseEndpoints } from "../connection.js";
import { CtlError } from "../errors.js";
import {
  type CtlIo,
  ETCD_STATUS_FIELDS,
  formatId,
  humanBytes,
  type OutputFormat,
  renderTable,
  toJson,
} from "../format.js";
import { listMembers } from "./member.js";

/** The endpoints to ask: the flag's, or with --cluster every member's client URLs. */
export async function targetEndpoints(conn: Connection, cluster: boolean): Promise<Endpoint[]> {
  if (!cluster) return conn.endpoints;
  const urls = (await listMembers(conn)).members.flatMap((m) => m.clientUrls);
  return parseEndpoints(urls.join(","));
}

interface Outcome<T> {
  endpoint: Endpoint;
  value?: T;
  error?: Error;
}

async function eachEndpoint<T>(
  endpoints: Endpoint[],
  ask: (e: Endpoint) => Promise<T>,
): Promise<Outcome<T>[]> {
  return Promise.all(
    endpoints.map(async (endpoint) => {
      try {
        return { endpoint, value: await ask(endpoint) };
      } catch (error) {
        return { endpoint, error: error as Error };
      }
    }),
  );
}

function statusRow(endpoint: Endpoint, s: etcd.StatusResponse): string[] {
  return [
    endpoint.given,
    formatId(s.header?.memberId ?? 0n),
    s.version,
    humanBytes(s.dbSize),
    String(s.leader === s.header?.memberId),
    String(s.isLearner),
    String(s.raftTerm),
    String(s.raftIndex),
    String(s.raftAppliedIndex),
    s.errors.join(", "),
  ];
}

const STATUS_HEADERS = [
  "ENDPOINT",
  "ID",
  "VERSION",
  "DB SIZE",
  "IS LEADER",
  "IS LEARNER",
  "RAFT TERM",
  "RAFT INDEX",
  "RAFT APPLIED INDEX",
  "ERRORS",
];

export async function endpointStatus(
  conn: Connection,
  io: CtlIo,
  format: OutputFormat,
  cluster: boolean,
): Promise<void> {
  const endpoints = await targetEndpoints(conn, cluster);
  const outcomes = await eachEndpoint(endpoints, (e) => {
    const m = conn.clients(e).maintenance;
    return call(conn, e, m.status.bind(m), {});
  });
  const ok = outcomes.filter((o) => o.value !== undefined);
  if (format === "json") {
    io.out(
      toJson(
        ok.map((o) => ({ Endpoint: o.endpoint.given, Status: o.value })),
        ETCD_STATUS_FIELDS,
      ),
    );
  } else if (format === "table") {
    io.out(
      renderTable(
        STATUS_HEADERS,
        ok.map((o) => statusRow(o.endpoint, o.value!)),
      ),
    );
  } else {
    for (const o of ok) io.out(statusRow(o.endpoint, o.value!).join(", "));
  }
  failIfAny(io, outcomes, "get the status of");
}

/**
 * etcdctl's way: a line on stderr for each endpoint that failed (reachable or not), after the
 * others' output, and exit 1.
 */
function failIfAny<T>(io: CtlIo, outcomes: Outcome<T>[], what: string): void {
  const failed = outcomes.filter((o) => o.error !== undefined);
  for (const o of failed) io.err(`Failed to ${what} endpoint ${o.endpoint.given} (${o.error!.message})`);
  if (failed.length > 0) {
    throw new CtlError("REPORTED", `${failed.length} of ${outcomes.length} endpoints failed`);
  }
}

interface Health {
  healthy: boolean;
  tookMs: number;
  error: string;
}

/** Healthy = a linearizable read commits through the leader and no alarm (NOSPACE...) is raised. */
async function checkHealth(conn: Connection, endpoint: Endpoint): Promise<Health> {
  const started = performance.now();
  const { kv, maintenance } = conn.clients(endpoint);
  try {
    await call(conn, endpoint, kv.range.bind(kv), rangeRequest({ key: Buffer.from("health") }));
    const alarms = await call(conn, endpoint, maintenance.alarm.bind(maintenance), {
      action: etcd.AlarmRequest_AlarmAction.GET,
      memberID: 0n,
      alarm: etcd.AlarmType.NONE,
    });
    const tookMs = performance.now() - started;
    if (alarms.alarms.length > 0) {
      const names = alarms.alarms
        .map((a) => `${etcd.AlarmType[a.alarm]} on ${formatId(a.memberID)}`)
        .join(", ");
      return { healthy: false, tookMs, error: `active alarm(s): ${names}` };
    }
    return { healthy: true, tookMs, error: "" };
  } catch (err) {
    return { healthy: false, tookMs: performance.now() - started, error: (err as Error).message };
  }
}

/** A duration as Go prints one (etcdctl's `took`): "812.345µs", "2.003966ms", "1.5s", "1m2.5s". */
export function took(ms: number): string {
  const trim = (n: number, digits: number) => String(Number(n.toFixed(digits)));
  if (ms < 1) return `${trim(ms * 1000, 3)}µs`;
  if (ms < 1000) return `${trim(ms, 6)}ms`;
  const minutes = Math.floor(ms / 60_000);
  const seconds = `${trim((ms - minutes * 60_000) / 1000, 9)}s`;
  if (minutes === 0) return seconds;
  const hours = Math.floor(minutes / 60);
  return hours === 0 ? `${minutes}m${seconds}` : `${hours}h${minutes % 60}m${seconds}`;
}

export async function endpointHealth(
  conn: Connection,
  io: CtlIo,
  format: OutputFormat,
  cluster: boolean,
): Promise<void> {
  const endpoints = await targetEndpoints(conn, cluster);
  const results = await Promise.all(
    endpoints.map(async (e) => ({ endpoint: e, ...(await checkHealth(conn, e)) })),
  );
  if (format === "json") {
    io.out(
      toJson(
        results.map((r) => ({
          endpoint: r.endpoint.given,
          health: r.healthy,
          took: took(r.tookMs),
          error: r.error || undefined,
        })),
      ),
    );
  } else if (format === "table") {
    const rows = results.map((r) => [r.endpoint.given, String(r.healthy), took(r.tookMs), r.error]);
    io.out(renderTable(["ENDPOINT", "HEALTH", "TOOK", "ERROR"], rows));
  } else {
    for (const r of results) {
      if (r.healthy)
        io.out(`${r.endpoint.given} is healthy: successfully committed proposal: took = ${took(r.tookMs)}`);
      else io.err(`${r.endpoint.given} is unhealthy: failed to commit proposal: ${r.error}`);
    }
  }
  const unhealthy = results.filter((r) => !r.healthy).length;
  if (unhealthy > 0)
    // etcdctl's plain error (exit 1), not a failure to connect: the command itself ran.
    throw new CtlError(
      "SERVER_ERROR",
      `unhealthy cluster: ${unhealthy} of ${results.length} endpoints unhealthy`,
    );
}
