// Reading the --config-file: TOML syntax errors with their line, nested tables flattened to dotted
// keys, and unknown keys refused with a suggestion.

import { readFileSync } from "node:fs";
import { parse, TomlError } from "smol-toml";
import { ConfigError, ConfigErrorCode, type ConfigIssue, configError } from "./config-error.js";
import { closestMatch } from "./did-you-mean.js";

function isTable(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value) && !(value instanceof Date);
}

function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    const reason =
      (err as NodeJS.ErrnoException).code === "ENOENT" ? "does not exist" : (err as Error).message;
    throw configError(
      ConfigErrorCode.FileUnreadable,
      "--config-file",
      `config file ${path}: cannot be read: ${reason} (check the path given to --config-file)`,
    );
  }
}

function parseToml(path: string, text: string): Record<string, unknown> {
  try {
    return parse(text) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof TomlError) {
      const firstLine = err.message.split("\n")[0] ?? err.message;
      throw configError(
        ConfigErrorCode.TomlSyntax,
        "--config-file",
        `config file ${path}: invalid TOML at line ${err.line}, column ${err.column}: ${firstLine}`,
      );
    }
    throw err;
  }
}

/**
 * Flatten `[authn.internal_token] signing_key = ...` into `authn.internal_token.signing_key`,
 * descending only into tables that lead to a declared key; anything else is an unknown key.
 */
function flatten(
  table: Record<string, unknown>,
  prefix: string,
  known: readonly string[],
  out: Map<string, unknown>,
  issues: ConfigIssue[],
  path: string,
): void {
  for (const [key, value] of Object.entries(table)) {
    const full = prefix === "" ? key : `${prefix}.${key}`;
    if (known.includes(full)) {
      out.set(full, value);
    } else if (isTable(value) && known.some((k) => k.startsWith(`${full}.`))) {
      flatten(value, full, known, out, issues, path);
    } else {
      const suggestion = closestMatch(full, known);
      const hint = suggestion !== undefined ? `did you mean "${suggestion}"?` : "remove it";
      issues.push({
        code: ConfigErrorCode.UnknownKey,
        key: full,
        message: `config file ${path}: unknown key "${full}" (${hint})`,
      });
    }
  }
}

/** Load a config file into dotted key → raw TOML value, refusing syntax errors and unknown keys. */
export function loadTomlFile(path: string, knownKeys: readonly string[]): Map<string, unknown> {
  const table = parseToml(path, readText(path));
  const out = new Map<string, unknown>();
  const issues: ConfigIssue[] = [];
  flatten(table, "", knownKeys, out, issues, path);
  if (issues.length > 0) throw new ConfigError(issues);
  return out;
}
