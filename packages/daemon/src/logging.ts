// Structured JSON logs (pino) to stdout or a file, with secrets redacted by key name at any depth.
//
// Why not only pino's `redact` paths: redacting a key wherever it sits needs wildcard paths
// (`*.token`, `*.*.token`, ...), and with a realistic key list these made every log call about 30×
// slower in a measurement. A key-name scrub in `formatters.log` covers any depth at a small cost;
// pino `redact` is still used for the explicit paths a daemon adds (`redactPaths`).

import { type DestinationStream, type Logger, type LoggerOptions, pino } from "pino";

export type { Logger } from "pino";

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * A property is secret when its name, lowercased and without `-` and `_`, ends with one of these:
 * so `token`, `adminToken`, `x-admin-token`, `signing_key`, `IAM_CRED_MASTER_KEY`, `secretAccessKey`
 * are all redacted, while `key`, `keyId` and `tokenCount` are not.
 */
export const DEFAULT_SECRET_KEYS: readonly string[] = [
  "token",
  "secret",
  "password",
  "passphrase",
  "privatekey",
  "signingkey",
  "masterkey",
  "secretaccesskey",
  "apikey",
  "credential",
  "credentials",
  "authorization",
  "cookie",
];

export const REDACTED = "[REDACTED]";

const MAX_SCRUB_DEPTH = 8;

function normaliseKey(key: string): string {
  return key.toLowerCase().replace(/[-_]/g, "");
}

/** A predicate telling whether a property name is secret under the suffix rule above. */
export function secretKeyMatcher(extraKeys: readonly string[] = []): (key: string) => boolean {
  const suffixes = [...DEFAULT_SECRET_KEYS, ...extraKeys].map(normaliseKey);
  return (key) => {
    const normalised = normaliseKey(key);
    return suffixes.some((suffix) => normalised.endsWith(suffix));
  };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== "object") return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** Copy of `value` with secret properties censored; only plain objects and arrays are walked. */
export function scrubSecrets(value: unknown, isSecret: (key: string) => boolean, depth = 0): unknown {
  if (depth > MAX_SCRUB_DEPTH) return value;
  if (Array.isArray(value)) return value.map((item) => scrubSecrets(item, isSecret, depth + 1));
  if (!isPlainObject(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) {
    out[key] = isSecret(key) && item !== undefined ? REDACTED : scrubSecrets(item, isSecret, depth + 1);
  }
  return out;
}

export interface LoggerConfig {
  /** Logged as `name` on every line (the daemon's name). */
  readonly name: string;
  readonly level?: LogLevel;
  /** Write to this file (appending, created with its directory) instead of stdout. */
  readonly file?: string;
  /** A stream to write to instead (tests). Takes precedence over `file`. */
  readonly destination?: DestinationStream;
  /** More secret name suffixes, in addition to DEFAULT_SECRET_KEYS. */
  readonly secretKeys?: readonly string[];
  /** Raw pino redact paths (e.g. `req.raw`), for values whose key name does not say "secret". */
  readonly redactPaths?: readonly string[];
  /** Fields on every line (e.g. member id). */
  readonly base?: Record<string, unknown>;
}

/**
 * The daemon's root logger. Writes synchronously so the last lines before an exit are not lost.
 * Use `logger.child({ component: "raft" })` per component.
 */
export function createLogger(config: LoggerConfig): Logger {
  const isSecret = secretKeyMatcher(config.secretKeys);
  const options: LoggerOptions = {
    name: config.name,
    level: config.level ?? "info",
    base: { pid: process.pid, ...config.base },
    timestamp: pino.stdTimeFunctions.isoTime,
    serializers: { err: pino.stdSerializers.err },
    formatters: {
      level: (label) => ({ level: label }),
      bindings: (bindings) => scrubSecrets(bindings, isSecret) as Record<string, unknown>,
      log: (object) => scrubSecrets(object, isSecret) as Record<string, unknown>,
    },
  };
  if (config.redactPaths !== undefined && config.redactPaths.length > 0) {
    options.redact = { paths: [...config.redactPaths], censor: REDACTED };
  }
  const destination =
    config.destination ??
    pino.destination({ dest: config.file ?? 1, sync: true, mkdir: config.file !== undefined, append: true });
  const logger = pino(options, destination);
  // pino applies `formatters.bindings` to the root only; children inherit this method through their
  // prototype, so scrubbing here covers `child()` bindings at every level.
  const originalChild = logger.child;
  logger.child = function child(this: Logger, bindings, childOptions) {
    return originalChild.call(this, scrubSecrets(bindings, isSecret) as typeof bindings, childOptions);
  } as typeof logger.child;
  return logger;
}
