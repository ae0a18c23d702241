// Shared helpers for the flaredb tests: temporary state machines and log entries built by hand.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ApplyEntry } from "@photoncloud/raft";
import { Command, CommandResult } from "../src/gen/flaredb/v1/command.js";
import type { Statement, Value } from "../src/gen/flaredb/v1/flaredb.js";
import { SqlStateMachine } from "../src/sql/state-machine.js";

const dirs: string[] = [];

export function tempMachine(name = "db"): SqlStateMachine {
  const dir = mkdtempSync(join(tmpdir(), "flaredb-test-"));
  dirs.push(dir);
  return new SqlStateMachine({ path: join(dir, `${name}.sqlite`) });
}

export function cleanupDirs(): void {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

export function v(x: null | bigint | number | string | Buffer): Value {
  if (x === null) return { nullValue: true };
  if (typeof x === "bigint") return { intValue: x };
  if (typeof x === "number") return { realValue: x };
  if (typeof x === "string") return { textValue: x };
  return { blobValue: x };
}

export function stmt(sql: string, ...positional: (null | bigint | number | string | Buffer)[]): Statement {
  return { sql, positional: positional.map(v), named: [] };
}

export function execCommand(statements: Statement[], transaction = false): Uint8Array {
  return Command.encode({ execute: { statements, transaction } }).finish();
}

export function entry(
  index: bigint,
  command: Uint8Array,
  timestampMs = 1_700_000_000_000,
  seed = 42n,
): ApplyEntry {
  return { index, term: 1n, timestampMs, seed, command };
}

export function decode(result: Uint8Array | undefined): CommandResult {
  return CommandResult.decode(result ?? new Uint8Array());
}

/** Applies `sqls` as one entry each (no transaction) and returns the decoded results. */
export function applySql(sm: SqlStateMachine, ...sqls: string[]): CommandResult[] {
  let index = sm.appliedIndex();
  return sm
    .applyBatch(
      sqls.map((s) => entry(++index, execCommand([stmt(s)]), 1_700_000_000_000 + Number(index), index)),
    )
    .map(decode);
}

/** The rows of a local query, as plain arrays. */
export function rows(sm: SqlStateMachine, sql: string): unknown[][] {
  return sm.withLocalContext(() => sm.queryRows(stmt(sql)).rows);
}

/** The SQLite image with the header's change counters zeroed (they count transactions, not data). */
export function normalizedImage(sm: SqlStateMachine): Buffer {
  const image = Buffer.from(sm.snapshot());
  image.fill(0, 24, 28);
  image.fill(0, 92, 100);
  return image;
}
