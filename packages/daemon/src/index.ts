// @photoncloud/daemon — the daemon kit. See README.md for the guide and an example.

export { ConfigError, ConfigErrorCode, type ConfigIssue, configError } from "./config/config-error.js";
export {
  type ConfigOf,
  defineOptions,
  type OptionKind,
  type OptionSpec,
  type OptionTable,
  type OptionValue,
  type RawValue,
  type ValueSource,
} from "./config/option-types.js";
export { parseGoDurationMs } from "./config/option-parsers.js";
export {
  assertValidOptionTable,
  type CommandSpec,
  conflict,
  describeConfig,
  type ParseOutcome,
  parseConfig,
  tomlKeyOf,
} from "./config/parse-config.js";
export {
  clientTlsFiles,
  clientTlsOptions,
  logOptions,
  peerTlsFiles,
  peerTlsOptions,
  tlsExtraOptions,
} from "./config/presets.js";
export {
  DomainError,
  type DomainErrorOptions,
  domainErrors,
  ERROR_METADATA,
  type GrpcStatus,
  grpcError,
  isMappedGrpcError,
  type MappedGrpcError,
  toGrpcError,
} from "./errors.js";
export {
  type GrpcServerConfig,
  type GrpcServiceRegistration,
  type RunningGrpcServer,
  serviceNameOf,
  startGrpcServer,
} from "./grpc/grpc-server.js";
export {
  bidiStream,
  clientStream,
  type InstrumentContext,
  instrumentService,
  serverStream,
  unary,
} from "./grpc/instrument.js";
export { ListenError } from "./grpc/listen-error.js";
export { preparePrivateDir } from "./private-dir.js";
export {
  type ClientStreamDone,
  type GrpcCallStatus,
  GrpcClientConnection,
  GrpcClientStream,
  type GrpcClientTarget,
} from "./h2/grpc-client.js";
export {
  clientCertificateCheck,
  grpcServerCredentials,
  httpsServerOptions,
  loadTlsMaterial,
  readPem,
  checkListenerTls,
  type ListenerTls,
  type TlsFiles,
  type TlsMaterial,
} from "./grpc/tls.js";
export {
  type HandedOverHttp,
  handedOverHttp,
  type HealthReport,
  type HttpRouteHandler,
  type HttpServerConfig,
  type RunningHttpServer,
  sendJson,
  startHttpServer,
} from "./http-server.js";
export {
  createLogger,
  DEFAULT_SECRET_KEYS,
  LOG_LEVELS,
  type Logger,
  type LoggerConfig,
  type LogLevel,
  REDACTED,
  scrubSecrets,
  secretKeyMatcher,
} from "./logging.js";
export {
  createMetrics,
  type DaemonMetrics,
  type GrpcCallLabels,
  type GrpcCallType,
  GrpcMethodStats,
  type MetricsConfig,
} from "./metrics.js";
export {
  type DaemonContext,
  type DaemonProcess,
  type DaemonSpec,
  runDaemon,
  type ShutdownHook,
} from "./run-daemon.js";
export {
  type DaemonUrl,
  grpcBindAddress,
  hostPort,
  makeUrl,
  parseUrl,
  parseUrlList,
  type UrlScheme,
} from "./urls.js";
export { CHAINFIRE_NODE_ARGS, CHAINFIRE_TUNABLES, chainfireEnv } from "./node-args.js";
export { formatVersion, gitCommitOf, type VersionInfo, versionInfo } from "./version.js";
export { checkHealth, type HealthStatus, listServices, type ProbeOptions } from "./grpc/probe-clients.js";
export { type EncodesWith, PooledWriter, reusingEncoder } from "./grpc/reusing-writer.js";
export { countingMessageBytes, type MessageByteCounts } from "./grpc/message-bytes.js";
export { processExists } from "./process-exists.js";
