// From an option table to a typed config: command line (commander) > environment > TOML file >
// defaults, every value validated by the same parser whatever its source.

import { Command, CommanderError, Option } from "commander";
import { ConfigError, ConfigErrorCode, type ConfigIssue, configError } from "./config-error.js";
import { exampleValue, optionSchema, tomlExample } from "./option-parsers.js";
import type { ConfigOf, OptionSpec, OptionTable, RawValue, ValueSource } from "./option-types.js";
import { loadTomlFile } from "./toml-file.js";

/** What a daemon tells the kit about itself, for --help and --version. */
export interface CommandSpec<T extends OptionTable> {
  /** Binary name, e.g. `chainfire`. */
  readonly name: string;
  /** One line for --help. */
  readonly description?: string;
  readonly options: T;
  /** Environment variable that may name the config file when --config-file is absent. */
  readonly configFileEnv?: string;
  /**
   * Also read each flag from `<prefix><FLAG>` (upper case, dashes as underscores), below the
   * option's own variable: `ETCD_` lets an etcd unit's `ETCD_INITIAL_CLUSTER` reach `--initial-cluster`.
   * The config file is not aliased (etcd's is YAML, with other keys).
   */
  readonly envAliasPrefix?: string;
  /**
   * The prefix of the daemon's own variables (`CHAINFIRE_`): one that names no option is reported
   * in `unknownEnv` too, as are the alias prefix's, so that a misspelt variable is not silently ignored.
   */
  readonly envPrefix?: string;
}

/** The environment variables an option is read from, its own first. */
function envNamesOf(option: OptionSpec, aliasPrefix: string | undefined): string[] {
  const names = option.env === undefined ? [] : [option.env];
  if (aliasPrefix !== undefined && option.flag !== undefined) {
    names.push(`${aliasPrefix}${option.flag.toUpperCase().replace(/-/g, "_")}`);
  }
  return names;
}

/** The outcome of parsing: run with a config, or print help / version and exit 0. */
export type ParseOutcome<T extends OptionTable> =
  | {
      readonly action: "run";
      readonly config: ConfigOf<T>;
      /** Which source supplied each option. */
      readonly sources: Readonly<Record<keyof T, ValueSource>>;
      readonly configFile: string | undefined;
      /** Variables with the alias prefix (ETCD_*) that name no option: logged, as etcd warns of them. */
      readonly unknownEnv: readonly string[];
    }
  | { readonly action: "help"; readonly text: string }
  | { readonly action: "version" };

/** How an option is named to the operator, by source (`envName`: the variable it was read from). */
function keyFor(
  spec: OptionSpec,
  name: string,
  source: ValueSource,
  configFile?: string,
  envName = spec.env,
): string {
  switch (source) {
    case "flag":
      return `--${spec.flag}`;
    case "env":
      return `${envName} (environment)`;
    case "file":
      return `config file ${configFile}: ${tomlKeyOf(spec, name)}`;
    case "default":
      return `default of option ${name}`;
  }
}

function exampleFor(spec: OptionSpec, name: string, source: ValueSource, envName = spec.env): string {
  if (source === "env") return `${envName}=${exampleValue(spec)}`;
  if (source === "file") return `${tomlKeyOf(spec, name)} = ${tomlExample(spec)}`;
  if (spec.flag !== undefined) return `--${spec.flag} ${exampleValue(spec)}`;
  return `${tomlKeyOf(spec, name)} = ${tomlExample(spec)}`;
}

/** The TOML key of an option: its `toml`, else its flag, else its property name. */
export function tomlKeyOf(spec: OptionSpec, name: string): string {
  return spec.toml ?? spec.flag ?? name;
}

function helpLine(spec: OptionSpec, envAliasPrefix: string | undefined): string {
  const extras: string[] = [];
  if (spec.default !== undefined) extras.push(`default: ${spec.secret ? "(secret)" : exampleValue(spec)}`);
  const envNames = envNamesOf(spec, envAliasPrefix);
  if (envNames.length > 0) extras.push(`env: ${envNames.join(" or ")}`);
  if (spec.required) extras.push("required");
  if (spec.type === "enum") extras.push(`one of: ${spec.values.join(", ")}`);
  return extras.length > 0 ? `${spec.description} (${extras.join("; ")})` : spec.description;
}

interface CommandLine {
  readonly program: Command;
  /** Option property name → commander attribute name. */
  readonly attributes: Map<string, string>;
}

const RESERVED_FLAGS = ["config-file", "version", "help", "h"];

/**
 * Programmer errors in an option table (duplicate or reserved flags, duplicate TOML keys, a key that
 * is also a table prefix of another) would otherwise show up as confusing operator errors.
 */
export function assertValidOptionTable(options: OptionTable): void {
  const flags = new Set<string>(RESERVED_FLAGS);
  const tomlKeys = new Set<string>(["config-file"]);
  for (const [name, option] of Object.entries(options)) {
    if (option.flag !== undefined) {
      if (flags.has(option.flag))
        throw new TypeError(`option ${name}: flag --${option.flag} is reserved or declared twice`);
      flags.add(option.flag);
    }
    const key = tomlKeyOf(option, name);
    if (tomlKeys.has(key)) throw new TypeError(`option ${name}: TOML key "${key}" is declared twice`);
    tomlKeys.add(key);
  }
  for (const key of tomlKeys) {
    const clash = [...tomlKeys].find((other) => other.startsWith(`${key}.`));
    if (clash !== undefined)
      throw new TypeError(`TOML key "${key}" is both a value and the table of "${clash}"`);
  }
}

function makeProgram<T extends OptionTable>(spec: CommandSpec<T>, output: string[]): CommandLine {
  assertValidOptionTable(spec.options);
  const program = new Command(spec.name)
    .description(spec.description ?? "")
    .exitOverride()
    .allowExcessArguments(false)
    .configureOutput({ writeOut: (s) => output.push(s), writeErr: (s) => output.push(s) })
    .option(
      "--config-file <path>",
      `TOML config file with the same keys as the flags${
        spec.configFileEnv ? ` (env: ${spec.configFileEnv})` : ""
      }`,
    )
    .option("--version", "print the version and exit");
  const attributes = new Map<string, string>();
  for (const [name, option] of Object.entries(spec.options)) {
    if (option.flag === undefined) continue;
    const valueName = option.type === "bool" ? "[bool]" : "<value>";
    const commanderOption = new Option(
      `--${option.flag} ${valueName}`,
      helpLine(option, spec.envAliasPrefix),
    );
    program.addOption(commanderOption);
    attributes.set(name, commanderOption.attributeName());
  }
  return { program, attributes };
}

function commanderIssue(err: CommanderError): ConfigIssue {
  const text = err.message.replace(/^error: /, "").replace(/\n/g, " ");
  if (err.code === "commander.optionMissingArgument") {
    return { code: ConfigErrorCode.InvalidValue, key: "argv", message: `${text} (example: --flag value)` };
  }
  return { code: ConfigErrorCode.UnknownFlag, key: "argv", message: `${text} (see --help)` };
}

/** Run commander; returns the parsed flags, or a help/version outcome. */
function parseArgv<T extends OptionTable>(
  spec: CommandSpec<T>,
  argv: readonly string[],
): { line: CommandLine } | { outcome: ParseOutcome<T> } {
  const output: string[] = [];
  const line = makeProgram(spec, output);
  try {
    line.program.parse([...argv], { from: "user" });
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
    if (err.code === "commander.helpDisplayed" || err.code === "commander.help") {
      return { outcome: { action: "help", text: output.join("") } };
    }
    throw new ConfigError(commanderIssue(err));
  }
  if (line.program.getOptionValue("version") === true) return { outcome: { action: "version" } };
  return { line };
}

/** Pick the highest-precedence raw value of one option (`envName`: the variable, when from env). */
function rawValueOf(
  name: string,
  option: OptionSpec,
  flags: CommandLine,
  env: Readonly<Record<string, string | undefined>>,
  file: Map<string, unknown>,
  envAliasPrefix: string | undefined,
): { raw: unknown; source: ValueSource; envName?: string } | undefined {
  const attribute = flags.attributes.get(name);
  const flagValue = attribute === undefined ? undefined : flags.program.getOptionValue(attribute);
  if (flagValue !== undefined) return { raw: flagValue === true ? "true" : flagValue, source: "flag" };
  for (const envName of envNamesOf(option, envAliasPrefix)) {
    const envValue = env[envName];
    if (envValue !== undefined && envValue !== "") return { raw: envValue, source: "env", envName };
  }
  const tomlKey = tomlKeyOf(option, name);
  if (file.has(tomlKey)) return { raw: file.get(tomlKey), source: "file" };
  if (option.default !== undefined) return { raw: option.default as RawValue, source: "default" };
  if (option.type === "bool") return { raw: false, source: "default" };
  return undefined;
}

function missingIssue(name: string, option: OptionSpec): ConfigIssue {
  const ways = [
    option.flag !== undefined ? `--${option.flag} ${exampleValue(option)}` : undefined,
    option.env !== undefined ? `${option.env}=${exampleValue(option)}` : undefined,
    `${tomlKeyOf(option, name)} = ${tomlExample(option)} in the config file`,
  ].filter((w) => w !== undefined);
  const key = option.flag !== undefined ? `--${option.flag}` : tomlKeyOf(option, name);
  return {
    code: ConfigErrorCode.MissingRequired,
    key,
    message: `${key}: required (set ${ways.join(", or ")})`,
  };
}

/**
 * Parse the command line, environment and config file against an option table.
 * Throws ConfigError listing every problem found.
 */
export function parseConfig<T extends OptionTable>(
  spec: CommandSpec<T>,
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>> = process.env,
): ParseOutcome<T> {
  const parsed = parseArgv(spec, argv);
  if ("outcome" in parsed) return parsed.outcome;
  const flags = parsed.line;
  const configFileFlag = flags.program.getOptionValue("configFile") as string | undefined;
  // The daemon's own variable, or the alias prefix's (ETCD_CONFIG_FILE), as for every other option.
  const configFileEnv = [spec.configFileEnv, aliasOf(spec, "CONFIG_FILE")]
    .map((name) => (name === undefined ? undefined : env[name]))
    .find((v) => v !== undefined && v !== "");
  const configFile = configFileFlag ?? configFileEnv;
  const knownKeys = Object.entries(spec.options).map(([name, o]) => tomlKeyOf(o, name));
  const file = configFile === undefined ? new Map<string, unknown>() : loadTomlFile(configFile, knownKeys);

  const issues: ConfigIssue[] = [];
  const config: Record<string, unknown> = {};
  const sources: Record<string, ValueSource> = {};
  for (const [name, option] of Object.entries(spec.options)) {
    const picked = rawValueOf(name, option, flags, env, file, spec.envAliasPrefix);
    // etcd refuses a variable its flag shadows (a unit's EnvironmentFile and ExecStart disagreeing
    // would otherwise go unnoticed); its variables, read through the alias prefix, are refused too.
    if (picked?.source === "flag" && spec.envAliasPrefix !== undefined) {
      for (const envName of envNamesOf(option, spec.envAliasPrefix)) {
        if (!envName.startsWith(spec.envAliasPrefix) || (env[envName] ?? "") === "") continue;
        issues.push({
          code: ConfigErrorCode.Conflict,
          key: envName,
          message:
            `${envName} (environment) is shadowed by --${option.flag} on the command line, which etcd ` +
            `refuses too: unset ${envName} or leave out the flag`,
        });
      }
    }
    if (picked === undefined) {
      if (option.required) issues.push(missingIssue(name, option));
      config[name] = undefined;
      continue;
    }
    const result = optionSchema(option).safeParse(picked.raw);
    if (result.success) {
      config[name] = result.data;
      sources[name] = picked.source;
      continue;
    }
    const key = keyFor(option, name, picked.source, configFile, picked.envName);
    const problem = result.error.issues[0]?.message ?? "invalid value";
    const example = problem.includes("e.g.")
      ? ""
      : ` (example: ${exampleFor(option, name, picked.source, picked.envName)})`;
    issues.push({ code: ConfigErrorCode.InvalidValue, key, message: `${key}: ${problem}${example}` });
  }
  if (issues.length > 0) throw new ConfigError(issues);
  const prefix = spec.envAliasPrefix;
  const known = new Set([
    ...Object.values(spec.options).flatMap((o) => envNamesOf(o, prefix)),
    ...[spec.configFileEnv, aliasOf(spec, "CONFIG_FILE")].filter((n) => n !== undefined),
  ]);
  const prefixes = [prefix, spec.envPrefix].filter((p): p is string => p !== undefined && p !== "");
  const unknownEnv = Object.keys(env)
    .filter((name) => prefixes.some((p) => name.startsWith(p)) && !known.has(name))
    .sort();
  return {
    action: "run",
    config: config as ConfigOf<T>,
    sources: sources as Record<keyof T, ValueSource>,
    configFile,
    unknownEnv,
  };
}

function aliasOf(spec: CommandSpec<OptionTable>, name: string): string | undefined {
  return spec.envAliasPrefix === undefined ? undefined : `${spec.envAliasPrefix}${name}`;
}

/** The config with secret options masked, for the "effective config" log line. */
export function describeConfig<T extends OptionTable>(
  options: T,
  config: ConfigOf<T>,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, option] of Object.entries(options)) {
    const value = (config as Record<string, unknown>)[name];
    if (value === undefined) continue;
    if (option.secret) out[name] = "[REDACTED]";
    else if (typeof value === "bigint") out[name] = `0x${value.toString(16)}`;
    else if (option.type === "url-list") out[name] = (value as { href: string }[]).map((u) => u.href);
    else out[name] = value;
  }
  return out;
}

/** Shorthand used by daemons for cross-option checks (e.g. https:// needs --cert-file). */
export function conflict(key: string, message: string): ConfigError {
  return configError(ConfigErrorCode.Conflict, key, `${key}: ${message}`);
}
