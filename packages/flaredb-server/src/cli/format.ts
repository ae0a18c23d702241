// How flaredbctl reads parameters from the command line and prints values, tables and JSON.

import type { NamedValue, Value } from "../gen/flaredb/v1/flaredb.js";
import { toSqlValue } from "../sql/values.js";

/**
 * One `--param`: `:name=value` (also `@name=` / `$name=`) is named, anything else positional.
 * Values: `null`, an integer (int64), a decimal or exponent number (double), `x'0aff'` (blob),
 * `'text'` (text, quotes removed: use it for text that looks like a number), anything else is text.
 */
export function parseParam(text: string): { name?: string; value: Value } {
  const named = /^[:@$]([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s.exec(text);
  if (named) return { name: named[1]!, value: parseValue(named[2]!) };
  return { value: parseValue(text) };
}

export function parseValue(text: string): Value {
  if (text === "null" || text === "NULL") return { nullValue: true };
  if (/^[+-]?\d+$/.test(text)) {
    const v = BigInt(text);
    if (v > 0x7fffffffffffffffn || v < -0x8000000000000000n) {
      throw new Error(`--param ${text}: outside the 64-bit integer range (quote it as '${text}' for text)`);
    }
    return { intValue: v };
  }
  if (/^[+-]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][+-]?\d+)$/.test(text)) return { realValue: Number(text) };
  const blob = /^[xX]'([0-9a-fA-F]*)'$/.exec(text);
  if (blob) {
    if (blob[1]!.length % 2 !== 0)
      throw new Error(`--param ${text}: a blob needs an even number of hex digits`);
    return { blobValue: Buffer.from(blob[1]!, "hex") };
  }
  const quoted = /^'(.*)'$/s.exec(text);
  return { textValue: quoted ? quoted[1]! : text };
}

export function splitParams(params: readonly string[]): { positional: Value[]; named: NamedValue[] } {
  const positional: Value[] = [];
  const named: NamedValue[] = [];
  for (const p of params) {
    const parsed = parseParam(p);
    if (parsed.name !== undefined) named.push({ name: parsed.name, value: parsed.value });
    else positional.push(parsed.value);
  }
  if (positional.length > 0 && named.length > 0) {
    throw new Error("--param: use either positional values or :name=value pairs, not both");
  }
  return { positional, named };
}

/** A value as text for a table cell (blobs as SQL hex literals, like the sqlite3 shell's quote mode). */
export function cellText(v: Value | undefined): string {
  const p = toSqlValue(v);
  if (p === null) return "NULL";
  if (Buffer.isBuffer(p)) return `x'${p.toString("hex")}'`;
  return String(p);
}

/**
 * JSON with 64-bit integers written as exact JSON numbers (not rounded through a double) and blobs
 * as `{"base64": "..."}`.
 */
export function toJson(value: unknown): string {
  const marker = "\u0000bigint:";
  const text = JSON.stringify(
    value,
    function (this: Record<string, unknown>, key, v) {
      const raw = this[key];
      if (typeof raw === "bigint") return marker + raw.toString();
      if (Buffer.isBuffer(raw) || raw instanceof Uint8Array)
        return { base64: Buffer.from(raw).toString("base64") };
      return v;
    },
    2,
  );
  return text.replace(/"\\u0000bigint:(-?\d+)"/g, "$1");
}

/** A boxed table, columns sized to their widest cell; numbers right-aligned. */
export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const numeric = headers.map(
    (_, i) => rows.length > 0 && rows.every((r) => /^-?\d+(\.\d+)?$/.test(r[i] ?? "")),
  );
  const rule = (l: string, m: string, r: string) => l + widths.map((w) => "─".repeat(w + 2)).join(m) + r;
  const line = (cells: readonly string[], align: boolean) =>
    "│" +
    widths
      .map((w, i) => {
        const c = cells[i] ?? "";
        return ` ${align && numeric[i] ? c.padStart(w) : c.padEnd(w)} `;
      })
      .join("│") +
    "│";
  return [
    rule("┌", "┬", "┐"),
    line(headers, false),
    rule("├", "┼", "┤"),
    ...rows.map((r) => line(r, true)),
    rule("└", "┴", "┘"),
  ].join("\n");
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)} ${units[u]}`;
}

/** Member IDs as etcdctl prints them: 16 lower-case hex digits. */
export function hexId(id: bigint): string {
  return id.toString(16).padStart(16, "0");
}

/** A member ID given on the command line: hex (as printed, with or without 0x) or decimal with `d:`. */
export function parseMemberId(text: string): bigint {
  const t = text.trim();
  if (/^d:\d+$/.test(t)) return BigInt(t.slice(2));
  if (/^(0x)?[0-9a-fA-F]{1,16}$/.test(t)) return BigInt(t.startsWith("0x") ? t : `0x${t}`);
  throw new Error(`member ID "${text}" is not a hex ID as printed by \`flaredbctl member list\``);
}
