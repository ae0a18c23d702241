// Registers the etcd v3 services this package implements on a grpc-js server.
import type { Server, ServiceDefinition } from "@grpc/grpc-js";
import { etcd, v3election, v3lock } from "@photoncloud/chainfire-api";
import type { EtcdApiContext } from "./context.js";
import { chainfireError } from "../errors.js";
import { electionHandlers, lockHandlers } from "./concurrency-services.js";
import { unary } from "./grpc-util.js";
import { guardEtcdService } from "./guard.js";
import { kvHandlers } from "./kv-service.js";
import { leaseHandlers } from "./lease-service.js";
import { maintenanceHandlers } from "./maintenance-service.js";
import { type WatchServiceOptions, watchHandlers } from "./watch-service.js";

/**
 * etcd's Auth, of which only Authenticate: etcd authentication is not implemented, and the call
 * answers as etcd does with it off, which etcd clients given a user take as "go on without a token".
 */
export function authHandlers(): object {
  return {
    authenticate: unary((): etcd.AuthenticateResponse => {
      throw chainfireError("AUTH_NOT_ENABLED");
    }),
  };
}

export function addEtcdServices(server: Server, ctx: EtcdApiContext, watch?: WatchServiceOptions): void {
  const services: [ServiceDefinition, object][] = [
    [etcd.KVService, kvHandlers(ctx)],
    [etcd.WatchService, watchHandlers(ctx, watch)],
    [etcd.LeaseService, leaseHandlers(ctx)],
    [etcd.MaintenanceService, maintenanceHandlers(ctx)],
    [etcd.AuthService, authHandlers()],
    [v3lock.LockService, lockHandlers(ctx)],
    [v3election.ElectionService, electionHandlers(ctx)],
  ];
  for (const [definition, handlers] of services) {
    server.addService(definition, guardEtcdService(definition, handlers, ctx.member));
  }
}
