// The process around a daemon: parse config (exit 2 on a ConfigError, no stack trace), build the
// logger and metrics, run `main`, then wait for SIGTERM/SIGINT and stop what main started in
// reverse order (exit 0). A second signal forces exit 1; an uncaught error is logged and exits 1.

import { ConfigError } from "./config/config-error.js";
import { ListenError } from "./grpc/listen-error.js";
import type { ConfigOf, OptionTable, ValueSource } from "./config/option-types.js";
import { type CommandSpec, describeConfig, parseConfig } from "./config/parse-config.js";
import { createLogger, type Logger, type LogLevel } from "./logging.js";
import { createMetrics, type DaemonMetrics } from "./metrics.js";
import { formatVersion, type VersionInfo, versionInfo } from "./version.js";

export type ShutdownHook = () => void | Promise<void>;

export interface DaemonContext<T extends OptionTable> {
  readonly config: ConfigOf<T>;
  readonly logger: Logger;
  readonly metrics: DaemonMetrics;
  readonly version: VersionInfo;
  /** The config file used, if any. */
  readonly configFile: string | undefined;
  /** Where each option's value came from ("default" when nobody set it). */
  readonly sources: Readonly<Record<keyof T, ValueSource>>;
  /** Register a stop step; steps run in reverse order of registration at shutdown. */
  onShutdown(name: string, hook: ShutdownHook): void;
  /** Resolves when shutdown starts (e.g. to stop background loops). */
  readonly shuttingDown: Promise<void>;
  /**
   * Logs `err` as fatal and exits 1 at once, as etcd exits on a failed fsync: for a fault after
   * which the daemon must not go on serving (a supervisor restarts it; shutdown hooks do not run).
   */
  fatal(err: unknown, what: string): void;
}

export interface DaemonSpec<T extends OptionTable> extends CommandSpec<T> {
  readonly version: string;
  readonly gitCommit?: string;
  /** Which options give the log level and log file (property names in `options`). */
  readonly logLevelOption?: keyof T & string;
  readonly logFileOption?: keyof T & string;
  /** Extra property names to redact in logs; secret options are added automatically. */
  readonly secretKeys?: readonly string[];
  /** Start everything, register shutdown hooks, and return. Throw ConfigError for bad config. */
  readonly main: (ctx: DaemonContext<T>) => Promise<void>;
  /** Overall limit for the shutdown hooks, after which the process exits 1. Default 15000. */
  readonly shutdownTimeoutMs?: number;
  /**
   * Whether every metric carries the label `daemon="<name>"`. Default true. A daemon whose metrics
   * stand in for another server's (chainfire's for etcd's, read by `etcdctl check datascale`)
   * turns it off.
   */
  readonly metricsDaemonLabel?: boolean;
}

/** Process hooks (injectable for tests of the lifecycle itself). */
export interface DaemonProcess {
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string | undefined>>;
  exit(code: number): never | void;
  writeOut(text: string): void;
  writeErr(text: string): void;
}

const realProcess: DaemonProcess = {
  argv: process.argv.slice(2),
  env: process.env,
  exit: (code) => process.exit(code),
  writeOut: (text) => process.stdout.write(text),
  writeErr: (text) => process.stderr.write(text),
};

interface Hook {
  readonly name: string;
  readonly hook: ShutdownHook;
}

async function runHooks(hooks: Hook[], logger: Logger): Promise<boolean> {
  let clean = true;
  for (const { name, hook } of [...hooks].reverse()) {
    try {
      logger.info({ step: name }, "stopping");
      await hook();
    } catch (err) {
      clean = false;
      logger.error({ err, step: name }, "shutdown step failed");
    }
  }
  return clean;
}

function secretKeysOf<T extends OptionTable>(spec: DaemonSpec<T>): string[] {
  const keys = [...(spec.secretKeys ?? [])];
  for (const [name, option] of Object.entries(spec.options)) {
    if (!option.secret) continue;
    keys.push(name);
    const last = (option.toml ?? option.flag ?? name).split(".").pop();
    if (last !== undefined) keys.push(last);
  }
  return keys;
}

/**
 * Run a daemon as the process's main program. Resolves when main has started (the process then
 * lives until a signal); the process exits by itself on errors and after shutdown.
 */
export async function runDaemon<const T extends OptionTable>(
  spec: DaemonSpec<T>,
  proc: DaemonProcess = realProcess,
): Promise<void> {
  let parsed: ReturnType<typeof parseConfig<T>>;
  try {
    parsed = parseConfig(spec, proc.argv, proc.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    proc.writeErr(`${spec.name}: ${err.message}\n`);
    proc.exit(2);
    return;
  }
  const version = versionInfo(spec.name, spec.version, spec.gitCommit);
  if (parsed.action !== "run") {
    proc.writeOut(parsed.action === "help" ? parsed.text : formatVersion(version));
    proc.exit(0);
    return;
  }

  const config = parsed.config as Record<string, unknown>;
  const logger = createLogger({
    name: spec.name,
    level: (spec.logLevelOption ? config[spec.logLevelOption] : undefined) as LogLevel | undefined,
    file: (spec.logFileOption ? config[spec.logFileOption] : undefined) as string | undefined,
    secretKeys: secretKeysOf(spec),
  });
  // As etcd: a variable with its prefix that names no flag is most likely a typo; its value is not logged.
  for (const name of parsed.unknownEnv) logger.warn({ variable: name }, "unrecognized environment variable");
  await startDaemon(spec, parsed.config, parsed.configFile, parsed.sources, version, logger, proc);
}

async function startDaemon<T extends OptionTable>(
  spec: DaemonSpec<T>,
  config: ConfigOf<T>,
  configFile: string | undefined,
  sources: Readonly<Record<keyof T, ValueSource>>,
  version: VersionInfo,
  logger: Logger,
  proc: DaemonProcess,
): Promise<void> {
  const hooks: Hook[] = [];
  let beginShutdown!: () => void;
  const shuttingDown = new Promise<void>((resolve) => (beginShutdown = resolve));
  let stopping = false;

  const fail = (err: unknown, what: string) => {
    logger.fatal({ err }, what);
    proc.exit(1);
  };
  process.on("uncaughtException", (err) => fail(err, "uncaught exception"));
  process.on("unhandledRejection", (err) => fail(err, "unhandled promise rejection"));
  // Warnings (a library's, or a background storage task's such as a failed WAL checkpoint) reach
  // the JSON log, not only stderr.
  process.on("warning", (warning) =>
    logger.warn({ warning: warning.name, detail: warning.message }, "process warning"),
  );

  const stop = (signal: string) => {
    if (stopping) {
      logger.warn({ signal }, "second signal: exiting without waiting for shutdown");
      return void proc.exit(1);
    }
    stopping = true;
    beginShutdown();
    logger.info({ signal }, "shutting down");
    const timer = setTimeout(
      () => fail(new Error("shutdown timed out"), "shutdown did not finish"),
      spec.shutdownTimeoutMs ?? 15_000,
    );
    timer.unref();
    void runHooks(hooks, logger).then((clean) => {
      clearTimeout(timer);
      logger.info({ clean }, "stopped");
      proc.exit(clean ? 0 : 1);
    });
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));

  logger.info({ version, configFile, config: describeConfig(spec.options, config) }, "starting");
  const ctx: DaemonContext<T> = {
    config,
    logger,
    metrics: createMetrics(spec.metricsDaemonLabel === false ? {} : { defaultLabels: { daemon: spec.name } }),
    version,
    configFile,
    sources,
    onShutdown: (name, hook) => {
      // Something started after a signal arrived mid-start: stop it now, the others are stopping.
      if (stopping) void runHooks([{ name, hook }], logger);
      else hooks.push({ name, hook });
    },
    shuttingDown,
    fatal: fail,
  };
  try {
    await spec.main(ctx);
  } catch (err) {
    if (err instanceof ConfigError) {
      proc.writeErr(`${spec.name}: ${err.message}\n`);
      await runHooks(hooks, logger);
      return void proc.exit(2);
    }
    logger.fatal({ err }, "failed to start");
    // A listener that cannot open is the operator's to fix: say so on stderr as well.
    if (err instanceof ListenError) proc.writeErr(`${spec.name}: ${err.message}\n`);
    await runHooks(hooks, logger);
    return void proc.exit(1);
  }
  logger.info("started");
}
