// Public API of @photoncloud/raft.
export * from "./core/errors.js";
export * from "./core/index.js";
export * from "./core/types.js";
export { DEFAULT_NODE_CONFIG, type NodeListener, RaftNode, type RaftNodeConfig } from "./node/raft-node.js";
export { decodeEnvelope, type Envelope, encodeEnvelope } from "./service/envelope.js";
export * from "./service/errors.js";
export type { MemberInfo } from "./service/members.js";
export {
  type MemberSpec,
  RaftService,
  type RaftServiceConfig,
  type RaftServiceStatus,
} from "./service/raft-service.js";
export type { ApplyEntry, Replicated, StateMachine } from "./service/state-machine.js";
export { type PersistBatch, SqliteLogStore, type SqliteLogStoreOptions } from "./storage/sqlite-log-store.js";
export {
  DEFAULT_TRANSPORT_CONFIG,
  GrpcTransport,
  type GrpcTransportConfig,
  type TransportHandler,
} from "./transport/grpc-transport.js";
export { AppendLogMachine } from "./service/sqlite-test-machine.js";
