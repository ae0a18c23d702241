// The gRPC metrics kept in plain numbers read exactly as prom-client's own metrics would for the same
// calls, in the text and JSON forms.
import { Counter, Histogram, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { createMetrics, type GrpcCallLabels } from "./metrics.js";

const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const say: GrpcCallLabels = { grpc_service: "a.v1.S", grpc_method: "Say", grpc_type: "unary" };
const watch: GrpcCallLabels = { grpc_service: "a.v1.S", grpc_method: "Watch", grpc_type: "bidi_stream" };

/** The same calls recorded with prom-client's Counter and Histogram, as the kit recorded them before. */
function promClientReference(calls: [GrpcCallLabels, number, string][]): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ daemon: "d" });
  const started = new Counter({
    name: "grpc_server_started_total",
    help: "gRPC calls started on the server.",
    labelNames: ["grpc_service", "grpc_method", "grpc_type"],
    registers: [registry],
  });
  const handled = new Counter({
    name: "grpc_server_handled_total",
    help: "gRPC calls completed on the server, by status code.",
    labelNames: ["grpc_service", "grpc_method", "grpc_type", "grpc_code"],
    registers: [registry],
  });
  const seconds = new Histogram({
    name: "grpc_server_handling_seconds",
    help: "Time from the start of a gRPC call to its final status, in seconds.",
    labelNames: ["grpc_service", "grpc_method", "grpc_type"],
    buckets: BUCKETS,
    registers: [registry],
  });
  for (const [labels, s, code] of calls) {
    started.inc({ ...labels });
    seconds.observe({ ...labels }, s);
    handled.inc({ ...labels, grpc_code: code });
  }
  return registry;
}

describe("gRPC method stats", () => {
  it("export the same series as prom-client's Counter and Histogram for the same calls", async () => {
    // Proves scrapes see what they saw before the stats moved out of prom-client's hot path.
    const calls: [GrpcCallLabels, number, string][] = [
      [say, 0.0003, "OK"],
      [say, 0.0005, "OK"],
      [say, 0.004, "NOT_FOUND"],
      [say, 42, "DEADLINE_EXCEEDED"],
      [watch, 1.5, "CANCELLED"],
    ];
    const metrics = createMetrics({ defaultLabels: { daemon: "d" }, withoutDefaultMetrics: true });
    for (const [labels, s, code] of calls) {
      const stats = metrics.grpcMethod(labels);
      stats.started++;
      stats.observeSeconds(s);
      stats.countHandled(code);
    }
    const reference = promClientReference(calls);
    expect(await metrics.registry.metrics()).toBe(await reference.metrics());
    expect(await metrics.registry.getMetricsAsJSON()).toEqual(await reference.getMetricsAsJSON());
  });

  it("show no series for a method never called, and totals that keep growing across scrapes", async () => {
    // Proves scrapes do not reset the counts and registering a method adds nothing by itself.
    const metrics = createMetrics({ withoutDefaultMetrics: true });
    metrics.grpcMethod(watch);
    const stats = metrics.grpcMethod(say);
    expect(metrics.grpcMethod(say)).toBe(stats);
    expect(await metrics.registry.metrics()).not.toMatch(/grpc_method=/);
    for (let scrape = 1; scrape <= 3; scrape++) {
      stats.started++;
      stats.observeSeconds(0.001);
      stats.countHandled("OK");
      const text = await metrics.registry.metrics();
      expect(text).toContain(
        `grpc_server_handled_total{grpc_service="a.v1.S",grpc_method="Say",grpc_type="unary",grpc_code="OK"} ${scrape}`,
      );
      expect(text).toMatch(new RegExp(`grpc_server_handling_seconds_count\\{[^}]*\\} ${scrape}\\n`));
      expect(text).not.toMatch(/grpc_method="Watch"/);
    }
  });
});
