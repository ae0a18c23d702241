// Public API of @photoncloud/flaredb-server.
export { RaftReplicatedDb } from "./api/raft-replicated-db.js";
export type { ReplicatedDb } from "./api/replicated-db.js";
export { flaredbOptions, main as runFlareDb } from "./bin/flaredb.js";
export { runFlaredbctl } from "./bin/flaredbctl.js";
export { FlareDbConnection } from "./cli/client.js";
export { createFlareDbService, type FlareDbServiceOptions, toServiceError } from "./api/service.js";
export { FlareDbError, FlareDbErrorCode, grpcStatusOf } from "./errors.js";
export * as pb from "./gen/flaredb/v1/flaredb.js";
export * as pbCluster from "./gen/flaredb/v1/cluster.js";
export * as pbCommand from "./gen/flaredb/v1/command.js";
export { type BackupFacts, dumpBody, verifyBackup, type VerifiedBackup } from "./sql/backup.js";
export { SeededPrng } from "./sql/determinism.js";
export { inspectStatement, type StatementInfo } from "./sql/inspect.js";
export { type QueryRows, SqlStateMachine, type SqlStateMachineOptions } from "./sql/state-machine.js";
export { splitStatements, tokenize } from "./sql/tokenizer.js";
export { LocalReplicated } from "./testing/local-replicated.js";
