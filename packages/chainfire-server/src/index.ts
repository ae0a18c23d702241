// Public API of @photoncloud/chainfire-server.
export { type EtcdApiContext, type MemberFacts, proposeCommand, responseHeader } from "./api/context.js";
export { addEtcdServices } from "./api/server.js";
export type { WatchServiceOptions } from "./api/watch-service.js";
export * from "./errors.js";
export { LeaseDriver, type LeaseDriverOptions } from "./mvcc/lease-driver.js";
export { type Lease, Lessor, type LessorOptions } from "./mvcc/lessor.js";
export { type CommitListener, isReadOnlyTxn, MvccStore, type MvccStoreOptions } from "./mvcc/store.js";
export { LocalReplicated } from "./testing/local-replicated.js";
export {
  type WatchDelivery,
  WatchHub,
  type WatchHubOptions,
  type WatchSink,
  type WatchSpec,
  Watcher,
} from "./watch/watch-hub.js";
export { CHAINFIRE_VERSION, ETCD_API_VERSION, main, startChainfire } from "./daemon/chainfire-daemon.js";
export { dataDirLayout } from "./daemon/data-dir.js";
export { memberIdForPeerUrls } from "./daemon/etcd-cluster-service.js";
export { type ChainfireOptions, chainfireOptions, DEFAULT_PORTS } from "./daemon/options.js";
