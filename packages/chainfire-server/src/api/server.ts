// Registers the etcd v3 services this package implements on a grpc-js server.
import type { Server } from "@grpc/grpc-js";
import { etcd } from "@photoncloud/chainfire-api";
import type { EtcdApiContext } from "./context.js";
import { kvHandlers } from "./kv-service.js";
import { leaseHandlers } from "./lease-service.js";
import { maintenanceHandlers } from "./maintenance-service.js";
import { type WatchServiceOptions, watchHandlers } from "./watch-service.js";

export function addEtcdServices(server: Server, ctx: EtcdApiContext, watch?: WatchServiceOptions): void {
  server.addService(etcd.KVService, kvHandlers(ctx));
  server.addService(etcd.WatchService, watchHandlers(ctx, watch));
  server.addService(etcd.LeaseService, leaseHandlers(ctx));
  server.addService(etcd.MaintenanceService, maintenanceHandlers(ctx));
}
