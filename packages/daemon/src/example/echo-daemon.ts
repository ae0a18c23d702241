// A minimal daemon built on the kit, used by the kit's own tests and as a reference for daemon
// authors: options, gRPC service with errors, HTTP endpoints, shutdown hooks.

import { fileURLToPath } from "node:url";
import { loadPackageDefinition, type ServiceDefinition } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { clientTlsFiles, clientTlsOptions, logOptions } from "../config/presets.js";
import { defineOptions } from "../config/option-types.js";
import { domainErrors } from "../errors.js";
import { startGrpcServer } from "../grpc/grpc-server.js";
import { serverStream, unary, writeMessage } from "../grpc/instrument.js";
import { startHttpServer } from "../http-server.js";
import { runDaemon } from "../run-daemon.js";

export const ECHO_PROTO = fileURLToPath(new URL("./echo.proto", import.meta.url));

export const echoOptions = defineOptions({
  name: { flag: "name", env: "ECHO_NAME", type: "string", default: "echo0", description: "member name" },
  listenClientUrls: {
    flag: "listen-client-urls",
    env: "ECHO_LISTEN_CLIENT_URLS",
    type: "url-list",
    default: "http://127.0.0.1:0",
    description: "gRPC listen URLs",
  },
  listenHttpUrls: {
    flag: "listen-http-urls",
    type: "url-list",
    default: "http://127.0.0.1:0",
    description: "HTTP listen URLs (metrics, health, version)",
  },
  maxRequestBytes: {
    flag: "max-request-bytes",
    type: "bytes",
    default: "1.5MiB",
    description: "largest request",
  },
  adminToken: {
    flag: "admin-token",
    env: "ECHO_ADMIN_TOKEN",
    type: "string",
    secret: true,
    description: "admin token",
  },
  shutdownDelayMs: {
    flag: "shutdown-delay",
    type: "duration-ms",
    default: 0,
    description: "pause in the last shutdown step (to test graceful shutdown)",
  },
  simulateFailure: {
    flag: "simulate-failure",
    type: "enum",
    values: ["none", "start", "uncaught", "warning"],
    default: "none",
    description:
      "fail on purpose (to test failure handling): during start, by an uncaught error after it, or with a process warning",
  },
  ...logOptions("ECHO_"),
  ...clientTlsOptions("ECHO_"),
});

interface EchoRequest {
  text: string;
}
interface RepeatRequest {
  text: string;
  count: number;
}
interface EchoReply {
  text: string;
}

/** The Echo service definition, loaded at run time from echo.proto. */
export function echoServiceDefinition(): ServiceDefinition {
  const pkg = loadPackageDefinition(loadSync(ECHO_PROTO)) as unknown as {
    photon: { example: { v1: { Echo: { service: ServiceDefinition } } } };
  };
  return pkg.photon.example.v1.Echo.service;
}

export const echoImplementation = {
  Say: unary<EchoRequest, EchoReply>(async (request) => {
    if (request.text === "fail") throw new Error("disk /var/lib/secret-path exploded");
    if (request.text === "missing") throw domainErrors.notFound("ECHO_NOT_FOUND", "nothing called missing");
    return { text: request.text };
  }),
  Repeat: serverStream<RepeatRequest, EchoReply>(async (request, call) => {
    for (let i = 0; i < request.count; i++) {
      if (request.text === "fail" && i === 1) throw new Error("stream broke at /var/lib/secret-path");
      await writeMessage(call, { text: `${request.text} ${i}` });
    }
  }),
  Hang: serverStream<EchoRequest, EchoReply>(async (request, call) => {
    call.write({ text: request.text });
    await new Promise<void>((resolve) => call.once("cancelled", () => resolve()));
  }),
};

/** Started when run as a program (`node --import tsx echo-daemon.ts`). */
export function main(): Promise<void> {
  return runDaemon({
    name: "echo",
    version: "0.1.0",
    description: "example daemon of @photoncloud/daemon",
    options: echoOptions,
    configFileEnv: "ECHO_CONFIG_FILE",
    logLevelOption: "logLevel",
    logFileOption: "logFile",
    main: async ({ config, logger, metrics, onShutdown, version }) => {
      const grpc = await startGrpcServer({
        urls: config.listenClientUrls,
        tls: clientTlsFiles(config),
        services: [{ definition: echoServiceDefinition(), implementation: echoImplementation }],
        protoFiles: [ECHO_PROTO],
        maxReceiveMessageBytes: config.maxRequestBytes,
        logger,
        metrics,
        what: "--listen-client-urls",
      });
      onShutdown("grpc", () => grpc.shutdown());
      const http = await startHttpServer({
        urls: config.listenHttpUrls,
        metrics,
        logger,
        health: () => ({ healthy: true, name: config.name }),
        version: { name: version.name, version: version.version },
        what: "--listen-http-urls",
      });
      onShutdown("http", () => http.close());
      onShutdown("delay", () => new Promise((resolve) => setTimeout(resolve, config.shutdownDelayMs)));
      if (config.simulateFailure === "start") throw new Error("simulated start-up failure");
      if (config.simulateFailure === "uncaught") {
        setTimeout(() => {
          throw new Error("simulated uncaught error");
        }, 10);
      }
      if (config.simulateFailure === "warning") process.emitWarning("simulated warning");
      logger.info(
        {
          grpcUrls: grpc.urls.map((u) => u.href),
          httpUrls: http.urls.map((u) => u.href),
          adminToken: config.adminToken,
        },
        "echo ready",
      );
    },
  });
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  void main();
}
