// Public API of @photoncloud/test-cluster: the supervisor, the cluster builder, the lane framework
// and the lanes, for tests and for tools that drive clusters programmatically.
export { MembershipClient, KvClient, SqlClient, grpcTarget } from "./clients.js";
export {
  Cluster,
  ClusterMember,
  type ClusterOptions,
  defaultTiming,
  laneTiming,
  type MemberDescriptor,
  raftArgs,
} from "./cluster.js";
export { scopeItems, requiredDocPhrases, scopeMarker, laneNames } from "./contract.js";
export { DaemonUnavailableError, locateDaemon, requireDaemon } from "./daemons.js";
export { down, status, up } from "./dev-cluster.js";
export {
  LaneContext,
  type LaneDefinition,
  type LaneResult,
  makeRunDir,
  runLane,
  summaryTable,
} from "./lane.js";
export { findLane, lanes } from "./lanes/index.js";
export { repoRoot, utcStamp, workRoot } from "./paths.js";
export { DeadlineError, delay, pollUntil } from "./poll.js";
export { freePorts, busyPorts } from "./ports.js";
export { hexId, memberStatus, waitForLeader } from "./raft-view.js";
export { reflectSurface } from "./reflection.js";
export { ensureDevSecrets } from "./secrets.js";
export { type ProcessSpec, SupervisedProcess } from "./supervisor.js";
