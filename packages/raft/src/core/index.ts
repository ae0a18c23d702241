// Public API of the consensus core.
export { RaftAssertionError } from "./assert.js";
export { ConfChangeDecodeError, decodeConfChange, encodeConfChange } from "./conf-change-codec.js";
export * from "./errors.js";
export { MemoryStorage } from "./memory-storage.js";
export { makeMessage } from "./messages.js";
export {
  type ProgressStatus,
  RaftCore,
  type RaftConfig,
  type RaftStatus,
} from "./raft-core.js";
export { READ_REQUESTS_PENDING_MAX } from "./read-only.js";
export { SeededRandom } from "./random.js";
export * from "./types.js";
