// Public API of @photoncloud/raft.
export * from "./core/types.js";
export type { ApplyEntry, StateMachine } from "./service/state-machine.js";
