// A configuration problem the operator must fix. The daemon's entry point prints the message to
// stderr and exits with status 2, without a stack trace: the message alone must say what is wrong
// and how to fix it.

/** Stable codes, one per kind of configuration problem. */
export const ConfigErrorCode = {
  /** A flag, environment variable or config-file value does not have the expected form. */
  InvalidValue: "CONFIG_INVALID_VALUE",
  /** The config file contains a key no option declares. */
  UnknownKey: "CONFIG_UNKNOWN_KEY",
  /** The command line contains a flag no option declares, or a stray argument. */
  UnknownFlag: "CONFIG_UNKNOWN_FLAG",
  /** The config file is not valid TOML. */
  TomlSyntax: "CONFIG_TOML_SYNTAX",
  /** The config file (or a file named by an option) cannot be read. */
  FileUnreadable: "CONFIG_FILE_UNREADABLE",
  /** A required option was given nowhere. */
  MissingRequired: "CONFIG_MISSING_REQUIRED",
  /** Options that are each valid but do not make sense together (e.g. https:// without a key). */
  Conflict: "CONFIG_CONFLICT",
} as const;
export type ConfigErrorCode = (typeof ConfigErrorCode)[keyof typeof ConfigErrorCode];

/** One problem; `key` is how the operator named the setting (`--flag`, `ENV_VAR`, or TOML key). */
export interface ConfigIssue {
  readonly code: ConfigErrorCode;
  readonly key: string;
  readonly message: string;
}

/**
 * Thrown for every configuration problem. `issues` lists all problems found in one pass, so an
 * operator fixes them all at once; `message` is those lines joined. `code` is the first issue's code.
 */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  readonly code: ConfigErrorCode;
  readonly issues: readonly ConfigIssue[];

  constructor(issues: ConfigIssue | readonly ConfigIssue[]) {
    const list = Array.isArray(issues) ? (issues as readonly ConfigIssue[]) : [issues as ConfigIssue];
    if (list.length === 0) throw new TypeError("ConfigError needs at least one issue");
    super(list.map((i) => i.message).join("\n"));
    this.issues = list;
    this.code = list[0]!.code;
  }
}

/** Shorthand for a one-issue ConfigError. */
export function configError(code: ConfigErrorCode, key: string, message: string): ConfigError {
  return new ConfigError({ code, key, message });
}
