// Small clients for the standard services every daemon exposes — gRPC health and server
// reflection — for CLIs (`endpoint health`) and for daemons' own integration tests.

import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import {
  type ChannelCredentials,
  type Client,
  credentials as grpcCredentials,
  loadPackageDefinition,
  type ServiceClientConstructor,
} from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { protoPath as healthProtoPath } from "grpc-health-check";

const require = createRequire(import.meta.url);

function reflectionProtoPath(): string {
  const main = require.resolve("@grpc/reflection");
  return join(dirname(main), "..", "proto", "grpc", "reflection", "v1", "reflection.proto");
}

function clientConstructor(protoFile: string, path: string[]): ServiceClientConstructor {
  let node: unknown = loadPackageDefinition(
    loadSync(protoFile, { keepCase: true, enums: String, defaults: true }),
  );
  for (const part of path) node = (node as Record<string, unknown>)[part];
  return node as ServiceClientConstructor;
}

export type HealthStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";

export interface ProbeOptions {
  /** Defaults to insecure. */
  readonly credentials?: ChannelCredentials;
  readonly deadlineMs?: number;
  /** Extra channel options, e.g. `grpc.ssl_target_name_override`. */
  readonly channelOptions?: Record<string, string | number>;
}

function withClient<T>(
  ctor: ServiceClientConstructor,
  address: string,
  options: ProbeOptions,
  use: (client: Client & Record<string, (...a: unknown[]) => unknown>, deadline: Date) => Promise<T>,
): Promise<T> {
  const client = new ctor(
    address,
    options.credentials ?? grpcCredentials.createInsecure(),
    options.channelOptions,
  );
  const deadline = new Date(Date.now() + (options.deadlineMs ?? 5000));
  return use(client as Client & Record<string, (...a: unknown[]) => unknown>, deadline).finally(() =>
    client.close(),
  );
}

/** grpc.health.v1.Health/Check on `address` (`host:port`); "" asks about the whole server. */
export function checkHealth(
  address: string,
  service = "",
  options: ProbeOptions = {},
): Promise<HealthStatus> {
  const ctor = clientConstructor(healthProtoPath, ["grpc", "health", "v1", "Health"]);
  return withClient(ctor, address, options, (client, deadline) => {
    return new Promise((resolve, reject) => {
      client.Check!({ service }, { deadline }, (err: Error | null, reply: { status: HealthStatus }) =>
        err ? reject(err) : resolve(reply.status),
      );
    });
  });
}

/** The service names a server lists through reflection (grpc.reflection.v1), sorted. */
export function listServices(address: string, options: ProbeOptions = {}): Promise<string[]> {
  const ctor = clientConstructor(reflectionProtoPath(), ["grpc", "reflection", "v1", "ServerReflection"]);
  return withClient(ctor, address, options, (client, deadline) => {
    return new Promise((resolve, reject) => {
      const call = client.ServerReflectionInfo!({ deadline }) as NodeJS.EventEmitter & {
        write(m: unknown): void;
        end(): void;
      };
      call.on("data", (reply: { list_services_response?: { service: { name: string }[] } }) => {
        resolve((reply.list_services_response?.service ?? []).map((s) => s.name).sort());
        call.end();
      });
      call.on("error", reject);
      call.write({ list_services: "*" });
    });
  });
}
