// Conversions between flaredb.v1 Values and the JavaScript values better-sqlite3 binds and returns
// (with safeIntegers: INTEGER is bigint, REAL is number, TEXT is string, BLOB is Buffer).

import type { NamedValue, Value } from "../gen/flaredb/v1/flaredb.js";

export type SqlValue = null | bigint | number | string | Buffer;

export function toSqlValue(v: Value | undefined): SqlValue {
  if (v === undefined) return null;
  if (v.intValue !== undefined) return v.intValue;
  if (v.realValue !== undefined) return v.realValue;
  if (v.textValue !== undefined) return v.textValue;
  if (v.blobValue !== undefined) return Buffer.from(v.blobValue);
  return null;
}

export function fromSqlValue(v: unknown): Value {
  if (v === null || v === undefined) return { nullValue: true };
  if (typeof v === "bigint") return { intValue: v };
  if (typeof v === "number") return { realValue: v };
  if (typeof v === "string") return { textValue: v };
  if (Buffer.isBuffer(v)) return { blobValue: v };
  if (v instanceof Uint8Array) return { blobValue: Buffer.from(v) };
  return { textValue: String(v) };
}

/** Named parameters as the object better-sqlite3 binds (names without their prefix). */
export function namedObject(named: readonly NamedValue[]): Record<string, SqlValue> {
  const out: Record<string, SqlValue> = {};
  for (const n of named) out[stripPrefix(n.name)] = toSqlValue(n.value);
  return out;
}

export function stripPrefix(name: string): string {
  return /^[:@$]/.test(name) ? name.slice(1) : name;
}

/** A SQL literal that reads back as exactly `v` (used by the logical dump). */
export function sqlLiteral(v: unknown): string {
  if (v === null || v === undefined) return "NULL";
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "number") return realLiteral(v);
  if (typeof v === "string") return `'${v.split("'").join("''")}'`;
  if (v instanceof Uint8Array) return `X'${Buffer.from(v).toString("hex").toUpperCase()}'`;
  throw new TypeError(`unexpected SQLite value of type ${typeof v}`);
}

function realLiteral(v: number): string {
  if (Number.isNaN(v)) return "NULL";
  if (v === Number.POSITIVE_INFINITY) return "9e999";
  if (v === Number.NEGATIVE_INFINITY) return "-9e999";
  const s = String(v);
  // "1" would read back as INTEGER; keep it REAL.
  return /[.eE]/.test(s) ? s : `${s}.0`;
}

/** A quoted SQL identifier. */
export function quoteIdentifier(name: string): string {
  return `"${name.split('"').join('""')}"`;
}
