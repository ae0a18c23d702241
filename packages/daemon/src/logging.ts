// Structured JSON logs (pino) to stdout or a file, with secrets redacted by key name wherever they
// appear up to three levels deep.

import { type DestinationStream, type Logger, type LoggerOptions, pino } from "pino";

export type { Logger } from "pino";

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Property names whose values never reach a log line. */
export const DEFAULT_SECRET_KEYS: readonly string[] = [
  "token",
  "accessToken",
  "access_token",
  "refreshToken",
  "adminToken",
  "admin_token",
  "secret",
  "secretAccessKey",
  "secret_access_key",
  "password",
  "passphrase",
  "signingKey",
  "signing_key",
  "masterKey",
  "master_key",
  "privateKey",
  "private_key",
  "authorization",
  "cookie",
  "credential",
  "credentials",
];

/** Pino redact paths for a key at the top level and nested up to three levels. */
export function redactPathsFor(keys: readonly string[]): string[] {
  const paths: string[] = [];
  for (const key of keys) {
    const k = /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
    const bare = k.startsWith(".") ? k.slice(1) : k;
    paths.push(bare, `*${k}`, `*.*${k}`, `*.*.*${k}`);
  }
  return paths;
}

export interface LoggerConfig {
  /** Logged as `name` on every line (the daemon's name). */
  readonly name: string;
  readonly level?: LogLevel;
  /** Write to this file (appending, created with its directory) instead of stdout. */
  readonly file?: string;
  /** A stream to write to instead (tests). Takes precedence over `file`. */
  readonly destination?: DestinationStream;
  /** More property names to redact, in addition to DEFAULT_SECRET_KEYS. */
  readonly secretKeys?: readonly string[];
  /** Raw pino redact paths (e.g. `req.headers["x-admin-token"]`), for shapes keys cannot express. */
  readonly redactPaths?: readonly string[];
  /** Fields on every line (e.g. member id). */
  readonly base?: Record<string, unknown>;
}

/**
 * The daemon's root logger. Writes synchronously so the last lines before an exit are not lost.
 * Use `logger.child({ component: "raft" })` per component.
 */
export function createLogger(config: LoggerConfig): Logger {
  const options: LoggerOptions = {
    name: config.name,
    level: config.level ?? "info",
    base: { pid: process.pid, ...config.base },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: {
      paths: [
        ...redactPathsFor([...DEFAULT_SECRET_KEYS, ...(config.secretKeys ?? [])]),
        ...(config.redactPaths ?? []),
      ],
      censor: "[REDACTED]",
    },
    serializers: { err: pino.stdSerializers.err },
    formatters: { level: (label) => ({ level: label }) },
  };
  const destination =
    config.destination ??
    pino.destination({ dest: config.file ?? 1, sync: true, mkdir: config.file !== undefined, append: true });
  return pino(options, destination);
}
