// Reads one statement before SQLite runs it: refuses what flaredb never allows, classifies DDL for
// the additive-first schema guard, rewrites CURRENT_TIMESTAMP/DATE/TIME into the deterministic date
// functions, and checks parameters against the placeholders. Works on tokens, so string literals,
// comments and quoted identifiers are never touched. Runs identically on the API (to refuse early)
// and in apply (the authority), so both give the same answer.

import { FlareDbError } from "../errors.js";
import {
  identifierName,
  keyword,
  significant,
  splitStatements,
  type Token,
  TokenKind,
  tokenize,
} from "./tokenizer.js";

export interface StatementInfo {
  /** The statement to hand to SQLite (CURRENT_* rewritten). */
  readonly sql: string;
  /** e.g. "SELECT", "INSERT", "CREATE TABLE", "ALTER TABLE DROP COLUMN", "PRAGMA user_version". */
  readonly kind: string;
  /** Recorded in the schema history. */
  readonly ddl: boolean;
  /** Refused outside a maintenance window. */
  readonly destructive: boolean;
  /** Placeholders: positional count (highest index) and the set of names (without prefix). */
  readonly positionalCount: number;
  readonly names: readonly string[];
}

/** Prefix of flaredb's own tables; user statements may not write them. */
export const internalTablePrefix = "_flaredb_";

const timeKeywords: Record<string, string> = {
  CURRENT_TIMESTAMP: "(datetime('now'))",
  CURRENT_DATE: "(date('now'))",
  CURRENT_TIME: "(time('now'))",
};

/** PRAGMAs that take a table or index argument (or check the whole file); all of them read only. */
const argumentPragmas = new Set([
  "table_info",
  "table_xinfo",
  "table_list",
  "index_list",
  "index_info",
  "index_xinfo",
  "foreign_key_list",
  "foreign_key_check",
  "integrity_check",
  "quick_check",
]);
/** PRAGMAs that may be read (never assigned), and the two that may be assigned (stored in the file). */
const readablePragmas = new Set([
  ...argumentPragmas,
  "user_version",
  "application_id",
  "schema_version",
  "data_version",
  "page_count",
  "page_size",
  "freelist_count",
  "encoding",
  "compile_options",
  "collation_list",
  "function_list",
  "module_list",
  "pragma_list",
  "foreign_keys",
  "journal_mode",
  "synchronous",
]);
const assignablePragmas = new Set(["user_version", "application_id"]);

const refuse = (message: string): FlareDbError => new FlareDbError("FLAREDB_STATEMENT_REFUSED", message);

/** Inspects exactly one statement; throws FlareDbError when it is refused. */
export function inspectStatement(sql: string): StatementInfo {
  const parts = splitStatements(sql);
  if (parts.length === 0) throw new FlareDbError("FLAREDB_EMPTY_REQUEST", "the statement is empty");
  if (parts.length > 1) {
    throw new FlareDbError(
      "FLAREDB_MULTIPLE_STATEMENTS",
      `expected one statement, found ${parts.length}; send each as its own Statement`,
    );
  }
  const tokens = tokenize(sql);
  const sig = significant(tokens).filter((t) => t.kind !== TokenKind.Semicolon);
  refuseEverywhere(sig);
  const { kind, ddl, destructive } = classify(sig);
  const { positionalCount, names } = placeholders(sig);
  return { sql: rewriteTimeKeywords(tokens), kind, ddl, destructive, positionalCount, names };
}

/** Replaces the CURRENT_* keywords by calls of the deterministic date functions. */
export function rewriteTimeKeywords(tokens: readonly Token[]): string {
  let out = "";
  for (const t of tokens) {
    const replacement = t.kind === TokenKind.Word ? timeKeywords[t.text.toUpperCase()] : undefined;
    out += replacement ?? t.text;
  }
  return out;
}

function refuseEverywhere(sig: readonly Token[]): void {
  for (let i = 0; i < sig.length; i++) {
    const t = sig[i]!;
    const kw = keyword(t);
    const isCall = sig[i + 1]?.text === "(";
    if (isCall && (kw === "LOAD_EXTENSION" || kw === "TOTAL_CHANGES")) {
      throw kw === "LOAD_EXTENSION"
        ? refuse("load_extension() is refused (rule: no native code loaded by SQL)")
        : new FlareDbError(
            "FLAREDB_NONDETERMINISTIC",
            "total_changes() differs between members (rule: no member-local state); use changes() instead",
          );
    }
    if (kw === "ROLLBACK" && i > 0) {
      throw refuse(
        "ON CONFLICT ROLLBACK / RAISE(ROLLBACK) would abort the replicated apply transaction (rule: statements may not end transactions); use ABORT or FAIL",
      );
    }
    const isName = t.kind === TokenKind.Word || t.kind === TokenKind.QuotedIdentifier;
    if (isName && identifierName(t).toLowerCase().startsWith(internalTablePrefix) && !isReadOnlyStart(sig)) {
      throw refuse(
        `${identifierName(t)} is flaredb's own table and is written only by flaredb (rule: internal tables are read-only); read it with Query or the SchemaHistory call`,
      );
    }
  }
}

function isReadOnlyStart(sig: readonly Token[]): boolean {
  const first = keyword(sig[0]);
  return first === "SELECT" || first === "EXPLAIN" || first === "VALUES";
}

interface Classification {
  kind: string;
  ddl: boolean;
  destructive: boolean;
}

function classify(sig: readonly Token[]): Classification {
  const first = keyword(sig[0]);
  switch (first) {
    case "BEGIN":
    case "COMMIT":
    case "END":
    case "ROLLBACK":
    case "SAVEPOINT":
    case "RELEASE":
      throw refuse(
        `${first} is refused: flaredb runs each request in its own transaction (rule: use ExecuteRequest.transaction for all-or-nothing batches)`,
      );
    case "ATTACH":
    case "DETACH":
      throw refuse(`${first} is refused (rule: one replicated database per cluster; no member-local files)`);
    case "VACUUM":
      throw refuse(
        "VACUUM is refused (rule: VACUUM INTO writes a member-local file, and VACUUM cannot run inside the replicated apply transaction); free space is reclaimed by backup and restore in a maintenance window",
      );
    case "PRAGMA":
      return classifyPragma(sig);
    case "CREATE":
      return classifyCreate(sig);
    case "DROP":
      return { kind: `DROP ${keyword(sig[1]) || "?"}`, ddl: true, destructive: true };
    case "ALTER":
      return classifyAlter(sig);
    case "REINDEX":
      return { kind: "REINDEX", ddl: true, destructive: true };
    default:
      return { kind: first || sig[0]?.text || "?", ddl: false, destructive: false };
  }
}

function classifyPragma(sig: readonly Token[]): Classification {
  let i = 1;
  if (sig[2]?.text === ".") {
    if (identifierName(sig[1]!).toLowerCase() !== "main")
      throw refuse("PRAGMA on an attached schema is refused");
    i = 3;
  }
  const name = sig[i] === undefined ? "" : identifierName(sig[i]!).toLowerCase();
  // `PRAGMA x = v` and `PRAGMA x(v)` assign, except for the PRAGMAs whose argument names an object.
  const assigns = sig[i + 1]?.text === "=" || (sig[i + 1]?.text === "(" && !argumentPragmas.has(name));
  if (assigns && assignablePragmas.has(name))
    return { kind: `PRAGMA ${name}`, ddl: true, destructive: false };
  const durability = [
    "journal_mode",
    "synchronous",
    "locking_mode",
    "wal_autocheckpoint",
    "wal_checkpoint",
    "journal_size_limit",
    "fullfsync",
    "checkpoint_fullfsync",
    "writable_schema",
    "auto_vacuum",
    "page_size",
    "temp_store",
    "mmap_size",
    "cache_size",
    "secure_delete",
  ];
  if (durability.includes(name) && (assigns || name === "wal_checkpoint")) {
    throw refuse(
      `PRAGMA ${name} is refused: it changes journaling or durability, which flaredb controls (rule: the storage settings are the same on every member)`,
    );
  }
  if (!assigns && readablePragmas.has(name)) {
    return { kind: `PRAGMA ${name}`, ddl: false, destructive: false };
  }
  throw refuse(
    `PRAGMA ${name || "?"} is refused (rule: only reading PRAGMAs and user_version/application_id are allowed; connection settings are not replicated)`,
  );
}

function classifyCreate(sig: readonly Token[]): Classification {
  let i = 1;
  const second = keyword(sig[1]);
  if (second === "TEMP" || second === "TEMPORARY") {
    throw refuse(
      "CREATE TEMP objects are refused (rule: temporary objects live on one member's connection and are not replicated)",
    );
  }
  if (second === "VIRTUAL") {
    throw refuse(
      "CREATE VIRTUAL TABLE is refused (rule: virtual-table modules keep state outside the replicated schema)",
    );
  }
  if (second === "UNIQUE") i = 2;
  const object = keyword(sig[i]);
  if (!["TABLE", "INDEX", "VIEW", "TRIGGER"].includes(object)) {
    return { kind: `CREATE ${object || "?"}`, ddl: true, destructive: false };
  }
  return { kind: `CREATE ${object}`, ddl: true, destructive: false };
}

function classifyAlter(sig: readonly Token[]): Classification {
  // ALTER TABLE [schema.]name ADD|DROP|RENAME ...
  let i = 3;
  if (sig[3]?.text === ".") i = 5;
  const action = keyword(sig[i]);
  const next = keyword(sig[i + 1]);
  if (action === "ADD") return { kind: "ALTER TABLE ADD COLUMN", ddl: true, destructive: false };
  if (action === "DROP") return { kind: "ALTER TABLE DROP COLUMN", ddl: true, destructive: true };
  if (action === "RENAME" && next === "TO")
    return { kind: "ALTER TABLE RENAME", ddl: true, destructive: true };
  if (action === "RENAME") return { kind: "ALTER TABLE RENAME COLUMN", ddl: true, destructive: true };
  return { kind: "ALTER TABLE", ddl: true, destructive: true };
}

function placeholders(sig: readonly Token[]): { positionalCount: number; names: string[] } {
  let positional = 0;
  const names: string[] = [];
  for (const t of sig) {
    if (t.kind !== TokenKind.Parameter) continue;
    if (t.text === "?") positional++;
    else if (t.text.startsWith("?")) positional = Math.max(positional, Number(t.text.slice(1)));
    else if (!names.includes(t.text.slice(1))) names.push(t.text.slice(1));
  }
  return { positionalCount: positional, names };
}

/** Refuses parameters that do not match the statement's placeholders (before anything runs). */
export function checkParameters(info: StatementInfo, positional: number, named: readonly string[]): void {
  if (info.names.length > 0 && positional > 0) {
    throw new FlareDbError(
      "FLAREDB_PARAMETER_MISMATCH",
      `the statement uses named parameters (${info.names.map((n) => `:${n}`).join(", ")}); pass them in Statement.named, not Statement.positional`,
    );
  }
  if (info.names.length === 0 && positional !== info.positionalCount) {
    throw new FlareDbError(
      "FLAREDB_PARAMETER_MISMATCH",
      `the statement has ${info.positionalCount} positional parameter(s) but ${positional} value(s) were given in Statement.positional`,
    );
  }
  const missing = info.names.filter((n) => !named.includes(n));
  const unknown = named.filter((n) => !info.names.includes(n));
  if (missing.length > 0 || unknown.length > 0) {
    const parts: string[] = [];
    if (missing.length > 0) parts.push(`missing ${missing.map((n) => `:${n}`).join(", ")}`);
    if (unknown.length > 0) parts.push(`not used by the statement: ${unknown.join(", ")}`);
    throw new FlareDbError(
      "FLAREDB_PARAMETER_MISMATCH",
      `named parameters do not match: ${parts.join("; ")}`,
    );
  }
}
