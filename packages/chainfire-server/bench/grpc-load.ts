// The benchmark's grpc-js load: closed-loop workers sending puts or ranges with the generated etcd
// client. By default one load process per member (LoadProcesses), each with its share of the
// requests in flight; BENCH_CLIENT_PROCESSES=0 sends them all from the benchmark's own process, as
// before 2026-12-07. One process's single JavaScript thread spends about 170 µs of CPU per put
// (more than either server spends serving it) and is busy all the time at 128 and 256 in flight:
// every answer then waits in its queue, and that queue, not the server, sets most of a request's
// latency. A load spread over processes is also what a server sees from its real clients.
import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Metadata } from "@grpc/grpc-js";
import { type ChainfireClients, createClients } from "@photoncloud/chainfire-api";
import { putRequest, rangeRequest } from "../src/mvcc/messages.js";

export const KEY_COUNT = 10_000;
export const VALUE = Buffer.alloc(256, 7);
export const ALL_WORKLOADS = ["put", "range-linearizable", "range-serializable"] as const;
export type Workload = (typeof ALL_WORKLOADS)[number];

export function unary(clients: ChainfireClients, method: "put" | "range", req: unknown): Promise<unknown> {
  const fn = clients.kv[method] as unknown as (
    r: unknown,
    m: Metadata,
    o: { deadline: number },
    cb: (e: Error | null, r: unknown) => void,
  ) => void;
  return new Promise((resolve, reject) =>
    fn.call(clients.kv, req, new Metadata(), { deadline: Date.now() + 30_000 }, (err, res) =>
      err ? reject(err) : resolve(res),
    ),
  );
}

let keyCounter = 0;
const nextKey = () => Buffer.from(`k${keyCounter++ % KEY_COUNT}`);

export function operation(workload: Workload, clients: ChainfireClients): () => Promise<unknown> {
  if (workload === "put") return () => unary(clients, "put", putRequest({ key: nextKey(), value: VALUE }));
  const serializable = workload === "range-serializable";
  return () => unary(clients, "range", rangeRequest({ key: nextKey(), serializable }));
}

export interface LoadResult {
  /** Latency of each completed request, ms. */
  latenciesMs: number[];
  errors: number;
  seconds: number;
}

/** `inFlight` closed-loop workers, worker i on ops[i mod n], until `endMs` (Date.now() time). */
export async function closedLoop(
  ops: readonly (() => Promise<unknown>)[],
  inFlight: number,
  endMs: number,
): Promise<LoadResult> {
  const latenciesMs: number[] = [];
  let errors = 0;
  const worker = async (i: number) => {
    const op = ops[i % ops.length]!;
    while (Date.now() < endMs) {
      const t0 = performance.now();
      try {
        await op();
        latenciesMs.push(performance.now() - t0);
      } catch {
        errors++;
      }
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: inFlight }, (_, i) => worker(i)));
  return { latenciesMs, errors, seconds: (performance.now() - t0) / 1000 };
}

interface LoadJob {
  workload: Workload;
  inFlight: number;
  durationMs: number;
  keyOffset: number;
}

/**
 * One member's share of a closed loop in a process of its own. Each process has its own client (one
 * HTTP/2 connection) and is told its share of `inFlight`; they start together and run for the same
 * time. A process, not a worker thread: tsx's loader, which runs this file, is not applied to
 * worker threads on Node.js 20.
 */
export class LoadProcesses {
  private readonly children: ChildProcess[];

  constructor(endpoints: readonly string[]) {
    this.children = endpoints.map((endpoint) =>
      fork(fileURLToPath(import.meta.url), [endpoint], {
        execArgv: process.execArgv,
        env: { ...process.env, CHAINFIRE_BENCH_LOAD_PROCESS: "1" },
        serialization: "advanced",
        stdio: ["ignore", "inherit", "inherit", "ipc"],
      }),
    );
  }

  async run(workload: Workload, inFlight: number, durationMs: number): Promise<LoadResult> {
    const n = this.children.length;
    const results = await Promise.all(
      this.children.map(
        (child, i) =>
          new Promise<LoadResult>((resolve, reject) => {
            const job: LoadJob = {
              workload,
              inFlight: Math.floor(inFlight / n) + (i < inFlight % n ? 1 : 0),
              durationMs,
              keyOffset: Math.floor((KEY_COUNT * i) / n),
            };
            const onExit = (code: number | null) =>
              reject(new Error(`a load process exited (code ${code}) during a measurement`));
            child.once("exit", onExit);
            child.once("message", (r: LoadResult) => {
              child.off("exit", onExit);
              resolve(r);
            });
            child.send(job);
          }),
      ),
    );
    return {
      latenciesMs: results.flatMap((r) => r.latenciesMs),
      errors: results.reduce((s, r) => s + r.errors, 0),
      seconds: Math.max(...results.map((r) => r.seconds)),
    };
  }

  get pids(): number[] {
    return this.children.map((c) => c.pid!);
  }

  close(): void {
    for (const c of this.children) c.kill();
  }
}

if (process.env.CHAINFIRE_BENCH_LOAD_PROCESS === "1" && process.send !== undefined) {
  const clients = createClients(process.argv[2]!);
  process.on("message", async (job: LoadJob) => {
    keyCounter = job.keyOffset;
    const result = await closedLoop(
      [operation(job.workload, clients)],
      job.inFlight,
      Date.now() + job.durationMs,
    );
    process.send!(result);
  });
  process.on("disconnect", () => process.exit(0));
}
