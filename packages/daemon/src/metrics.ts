// Prometheus metrics: one registry per daemon with the default process metrics and the gRPC
// server metrics every instrumented handler records.

import { Counter, collectDefaultMetrics, Histogram, Registry } from "prom-client";

/** gRPC call shapes, as in the metric label `grpc_type`. */
export type GrpcCallType = "unary" | "client_stream" | "server_stream" | "bidi_stream";

export interface DaemonMetrics {
  readonly registry: Registry;
  /** grpc_server_started_total{grpc_service, grpc_method, grpc_type} */
  readonly grpcStarted: Counter<"grpc_service" | "grpc_method" | "grpc_type">;
  /** grpc_server_handled_total{grpc_service, grpc_method, grpc_type, grpc_code} */
  readonly grpcHandled: Counter<"grpc_service" | "grpc_method" | "grpc_type" | "grpc_code">;
  /** grpc_server_handling_seconds{grpc_service, grpc_method, grpc_type}: start to final status. */
  readonly grpcHandlingSeconds: Histogram<"grpc_service" | "grpc_method" | "grpc_type">;
}

export interface MetricsConfig {
  /** Constant labels on every metric (e.g. `{ daemon: "chainfire" }`). */
  readonly defaultLabels?: Record<string, string>;
  /** Skip process/Node.js default metrics (tests creating many registries). */
  readonly withoutDefaultMetrics?: boolean;
}

/** A fresh registry with default and gRPC metrics. Daemons register their own metrics on `registry`. */
export function createMetrics(config: MetricsConfig = {}): DaemonMetrics {
  const registry = new Registry();
  if (config.defaultLabels) registry.setDefaultLabels(config.defaultLabels);
  if (!config.withoutDefaultMetrics) collectDefaultMetrics({ register: registry });
  const grpcStarted = new Counter({
    name: "grpc_server_started_total",
    help: "gRPC calls started on the server.",
    labelNames: ["grpc_service", "grpc_method", "grpc_type"] as const,
    registers: [registry],
  });
  const grpcHandled = new Counter({
    name: "grpc_server_handled_total",
    help: "gRPC calls completed on the server, by status code.",
    labelNames: ["grpc_service", "grpc_method", "grpc_type", "grpc_code"] as const,
    registers: [registry],
  });
  const grpcHandlingSeconds = new Histogram({
    name: "grpc_server_handling_seconds",
    help: "Time from the start of a gRPC call to its final status, in seconds.",
    labelNames: ["grpc_service", "grpc_method", "grpc_type"] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  return { registry, grpcStarted, grpcHandled, grpcHandlingSeconds };
}
