// Public API of @photoncloud/raft.
export * from "./core/errors.js";
export * from "./core/index.js";
export * from "./core/types.js";
export { DEFAULT_NODE_CONFIG, type NodeListener, RaftNode, type RaftNodeConfig } from "./node/raft-node.js";
export { decodeEnvelope, type Envelope, encodeEnvelope } from "./service/envelope.js";
export * from "./service/errors.js";
export { encodeLayerSnapshot, type MemberInfo } from "./service/members.js";
export {
  type MemberSpec,
  RaftService,
  type RaftServiceConfig,
  type RaftServiceStatus,
} from "./service/raft-service.js";
export type {
  ApplyEntry,
  ProposeOptions,
  Replicated,
  SnapshotFileJob,
  SnapshotJob,
  StateMachine,
} from "./service/state-machine.js";
export {
  SnapshotWorker,
  type SnapshotWorkerOptions,
} from "./service/snapshot-worker.js";
export {
  type PersistBatch,
  SqliteLogStore,
  type SqliteLogStoreOptions,
} from "./storage/sqlite-log-store.js";
export {
  DatabaseStillOpenError,
  discardInterruptedReplace,
  renameOverDatabase,
  replaceDatabaseFile,
  replaceDatabaseFileFrom,
  rollbackJournalCopy,
  syncFile,
  syncFolder,
  WalFileSync,
  writeDatabaseFile,
} from "./storage/sync-files.js";
export { WalCheckpointer, type WalCheckpointerOptions } from "./storage/wal-checkpointer.js";
export {
  DEFAULT_TRANSPORT_CONFIG,
  GrpcTransport,
  type GrpcTransportConfig,
  type PeerStats,
  type SnapshotTransfers,
  type TransportHandler,
} from "./transport/grpc-transport.js";
export { AppendLogMachine } from "./service/sqlite-test-machine.js";
export { deriveClusterId, deriveMemberId, formatId, parseId } from "./member/ids.js";
export { parseInitialCluster } from "./member/initial-cluster.js";
export {
  advertiseIssues,
  type MemberPlan,
  planMember,
  readIdentity,
  resolveMemberUrls,
  type StoredIdentity,
} from "./member/member-config.js";
export { type MemberConfig, type MemberPorts, memberOptions } from "./member/member-options.js";
export {
  type ClusterMember,
  type ExtraStatus,
  type LeaderTransferRequest,
  type LeaderTransferResponse,
  type MemberAddRequest,
  type MemberAddResponse,
  type MemberListResponse,
  type MemberRemoveRequest,
  type MemberRemoveResponse,
  type MembershipHandlers,
  membershipHandlers,
  type StatusResponse,
} from "./member/membership-handlers.js";
export { memberGauges } from "./member/member-metrics.js";
export {
  type MemberHeader,
  peerClientTls,
  type RunningMember,
  type StartMemberArgs,
  startMember,
} from "./member/start-member.js";
