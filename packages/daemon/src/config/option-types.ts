// The option table a daemon declares once, and the TypeScript type of the config it yields.

import type { DaemonUrl } from "../urls.js";

/** The kinds of values an option can hold; each has one parser shared by flags, env and TOML. */
export type OptionKind =
  | "string"
  | "int"
  | "bool"
  | "duration-ms"
  | "url-list"
  | "path"
  | "enum"
  | "bytes"
  | "string-list"
  | "uint64";

/** What each kind parses to. */
export interface OptionValueTypes {
  string: string;
  int: number;
  bool: boolean;
  "duration-ms": number;
  "url-list": DaemonUrl[];
  path: string;
  enum: string;
  bytes: number;
  "string-list": string[];
  uint64: bigint;
}

/** A value as written by a person: flags and env give strings, TOML gives native values. */
export type RawValue = string | number | bigint | boolean | readonly string[];

interface OptionCommon {
  /** CLI flag without the dashes, etcd style: `listen-client-urls`. Omit for a TOML/env-only option. */
  readonly flag?: string;
  /** TOML key; dotted for nested tables (`authn.internal_token.signing_key`). Defaults to `flag`. */
  readonly toml?: string;
  /** Environment variable, e.g. `CHAINFIRE_NAME`. */
  readonly env?: string;
  /** One line for --help. */
  readonly description: string;
  /** Default, written as a person would (e.g. `"http://127.0.0.1:2379"`, `100`, `"8GiB"`). */
  readonly default?: RawValue;
  /** Refuse to start when the option is given nowhere (and has no default). */
  readonly required?: boolean;
  /** Never printed: masked in --help, in the effective-config log line, and redacted by the logger. */
  readonly secret?: boolean;
  /** The example value error messages suggest; a sensible one is derived from the kind otherwise. */
  readonly example?: string;
  /** Extra check on the parsed value; return a problem ("must be at least 3 members") or undefined. */
  readonly check?: (value: never) => string | undefined;
}

export interface NumericOption extends OptionCommon {
  readonly type: "int" | "duration-ms" | "bytes";
  readonly min?: number;
  readonly max?: number;
  /**
   * duration-ms: only a value with its unit (`20s`, `2h0m0s`), as a Go duration flag takes it; a bare
   * number (which other duration options read as milliseconds) is refused.
   */
  readonly unitRequired?: boolean;
}

export interface EnumOption extends OptionCommon {
  readonly type: "enum";
  readonly values: readonly string[];
}

export interface PlainOption extends OptionCommon {
  readonly type: "string" | "bool" | "url-list" | "path" | "string-list" | "uint64";
}

export type OptionSpec = NumericOption | EnumOption | PlainOption;

/** A daemon's option table: config property name → spec. */
export type OptionTable = Readonly<Record<string, OptionSpec>>;

/** The value type of one option. */
export type OptionValue<S extends OptionSpec> = S extends { type: "enum"; values: readonly (infer V)[] }
  ? V
  : OptionValueTypes[S["type"]];

/** An option always has a value when it has a default, is required, or is a bool (false by default). */
type AlwaysPresent = { default: RawValue } | { required: true } | { type: "bool" };

/** The typed, validated config produced from an option table. */
export type ConfigOf<T extends OptionTable> = {
  readonly [K in keyof T]: T[K] extends AlwaysPresent ? OptionValue<T[K]> : OptionValue<T[K]> | undefined;
};

/**
 * Declare a daemon's options. The `const` type parameter keeps literal types (enum values, which
 * options have defaults) so that `ConfigOf<typeof options>` is precise.
 */
export function defineOptions<const T extends OptionTable>(table: T): T {
  return table;
}

/** Where a value came from, highest precedence first. */
export type ValueSource = "flag" | "env" | "file" | "default";
