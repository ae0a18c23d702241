import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type DaemonContext,
  preparePrivateDir,
  runDaemon,
  sendJson,
  startGrpcServer,
  startHttpServer,
} from "@photoncloud/daemon";
import { IamCore, IamStore, createIamServices } from "@photoncloud/iam-api";
import { type BootstrapResult, checkBootstrap } from "./bootstrap.js";
import { markMappedErrors } from "./kit-adapter.js";
import { runtimeMtlsCredentials } from "./mtls-credentials.js";
import { iamOptions } from "./options.js";

export const IAM_PROTO = fileURLToPath(new URL("../../../proto/iam/v1/iam.proto", import.meta.url));
export const IAM_VERSION = "0.1.0";

type Ctx = DaemonContext<typeof iamOptions>;

function warnDevMode(ctx: Ctx, boot: BootstrapResult): void {
  const banner =
    "DEVELOPMENT MODE (--dev): iam is running with relaxed bootstrap hardening; NEVER use this in production";
  ctx.logger.warn({ devMode: true, relaxations: boot.devRelaxations }, banner);
  process.stderr.write(`\n!!! ${banner}\n${boot.devRelaxations.map((r) => `!!!   - ${r}`).join("\n")}\n\n`);
}

async function startIam(ctx: Ctx): Promise<void> {
  const { config, logger } = ctx;
  const boot = checkBootstrap(config);
  if (config.dev) warnDevMode(ctx, boot);
  preparePrivateDir(config.dataDir, "--data-dir", (fields, msg) => logger.warn(fields, msg));
  const store = new IamStore(join(config.dataDir, "iam.db"));
  ctx.onShutdown("store", () => store.close());
  // The TLS listener's CA list follows the trust roots (grpc-js exposes a client certificate to
  // handlers only when it verified at the TLS layer); the handler then re-checks roots and mappings.
  let trustRootsChanged: (pems: string[]) => void = () => {};
  const core = await IamCore.open({
    onTrustRootsChanged: (pems) => trustRootsChanged(pems),
    store,
    masterKey: boot.masterKey,
    issuer: config.issuer,
    audience: config.audience,
    defaultTtlSeconds: Math.min(config.tokenTtlSeconds, config.tokenMaxTtlSeconds),
    maxTtlSeconds: config.tokenMaxTtlSeconds,
    clockToleranceSeconds: config.clockToleranceSeconds,
    signingKeyPem: boot.signingKeyPem,
    generateSigningKey: boot.generateSigningKey,
  });
  ctx.onShutdown("audit", () => core.close());
  if (!core.credentialsEnabled) logger.warn("IAM_CRED_MASTER_KEY is not set: credential issuance is refused");

  const tlsUrls = config.listenClientUrls.some((u) => u.tls);
  const mtls =
    tlsUrls && config.certFile && config.keyFile
      ? runtimeMtlsCredentials(
          config.certFile,
          config.keyFile,
          core.mtls.trustRoots().map((r) => r.pem),
        )
      : null;
  const grpc = await startGrpcServer({
    urls: config.listenClientUrls,
    tls: { certFile: config.certFile, keyFile: config.keyFile },
    credentialsFor: (url) => (url.tls && mtls ? mtls.credentials : undefined),
    services: markMappedErrors(
      createIamServices(core, {
        token: boot.adminToken,
        allowUnauthenticated: boot.allowUnauthenticatedAdmin,
      }),
    ),
    protoFiles: [IAM_PROTO],
    // Channelz bookkeeping (per-call counters and traces kept for the channelz admin service, which
    // iam does not expose) costs time on every call.
    channelOptions: { "grpc.enable_channelz": 0 },
    logger,
    metrics: ctx.metrics,
    what: "--listen-client-urls",
  });
  ctx.onShutdown("grpc", () => grpc.shutdown());
  if (mtls) trustRootsChanged = mtls.setTrustRoots;
  const http = await startHttpServer({
    urls: config.listenHttpUrls,
    metrics: ctx.metrics,
    logger,
    health: () => ({ healthy: true, credentialsEnabled: core.credentialsEnabled, devMode: config.dev }),
    version: { name: "iam", version: IAM_VERSION },
    routes: { "/.well-known/jwks.json": (_req, res) => sendJson(res, 200, core.keys.jwks()) },
    what: "--listen-http-urls",
  });
  ctx.onShutdown("http", () => http.close());
  logger.info(
    { grpcUrls: grpc.urls.map((u) => u.href), httpUrls: http.urls.map((u) => u.href), devMode: config.dev },
    "iam ready",
  );
}

/** The `iam` program. */
export function main(): Promise<void> {
  return runDaemon({
    name: "iam",
    version: IAM_VERSION,
    description: "PhotonCloud iam: internal tokens, access-key credentials and mTLS identities",
    options: iamOptions,
    configFileEnv: "IAM_CONFIG_FILE",
    logLevelOption: "logLevel",
    logFileOption: "logFile",
    secretKeys: [
      "secret",
      "token",
      "signingKey",
      "credMasterKey",
      "adminToken",
      "photonAdminToken",
      "privateKeyPem",
    ],
    main: startIam,
  });
}
