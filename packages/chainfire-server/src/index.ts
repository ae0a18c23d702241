// Public API of @photoncloud/chainfire-server.
export * from "./errors.js";
export { Lessor, type Lease } from "./mvcc/lessor.js";
export { type CommitListener, MvccStore, type MvccStoreOptions } from "./mvcc/store.js";
