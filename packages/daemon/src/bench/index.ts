// @photoncloud/daemon/bench — load-generation helpers for the daemons' benchmarks: a lean HTTP/2
// gRPC client, a closed-loop driver, CPU-time sampling of this process and of daemon processes, and
// h2load (a C load generator) for unary calls when it is installed.

export { closedLoop, type LoadResult, percentile } from "./closed-loop.js";
export {
  type CpuSample,
  type CpuTargets,
  cpuMicrosPerOp,
  formatCpuPerOp,
  processCpuMicros,
  sampleCpu,
  selfCpuMicros,
} from "./cpu-time.js";
export {
  type CallOptions,
  GrpcCallError,
  type GrpcMethod,
  H2GrpcClient,
  type H2GrpcClientOptions,
  type MessageCodec,
  methodOf,
} from "./h2-grpc-client.js";
export {
  grpcHandledCounts,
  grpcHandledTotals,
  type H2LoadOptions,
  type H2LoadResult,
  type HandledTotals,
  h2loadAvailable,
  parseRun as parseH2LoadRun,
  runH2Load,
} from "./h2load.js";
