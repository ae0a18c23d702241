// Public API of @photoncloud/raft.
export * from "./core/errors.js";
export * from "./core/types.js";
export type { ApplyEntry, Replicated, StateMachine } from "./service/state-machine.js";
export * from "./core/index.js";
