// Output rendering shared by every command: etcdctl's three shapes (simple lines, a bordered table,
// JSON). 64-bit values are bigints and are printed with every digit, never through a JS number.

import { badArgument } from "./errors.js";

export type OutputFormat = "simple" | "table" | "json";

/** Lower-case hex without leading zeros, as etcdctl prints member IDs in lists (`%x`). */
export function formatId(id: bigint): string {
  return id.toString(16);
}

/** The same, right-aligned in 16 columns, as etcdctl's "Member … added to cluster …" lines (`%16x`). */
export function formatId16(id: bigint): string {
  return formatId(id).padStart(16, " ");
}

/** The largest int64, the wire type of revisions, limits and lease IDs. */
export const INT64_MAX = (1n << 63n) - 1n;

/**
 * Accepts hex (with or without 0x, as etcdctl prints it); the error names the argument. `max` bounds
 * IDs whose wire type is int64 (leases), as etcdctl's parser refuses what overflows it.
 */
export function parseHexId(text: string, what: string, max: bigint = (1n << 64n) - 1n): bigint {
  const digits = text.startsWith("0x") || text.startsWith("0X") ? text.slice(2) : text;
  if (!/^[0-9a-fA-F]{1,16}$/.test(digits)) {
    throw badArgument(`${what} "${text}" is not a hex ID (up to 16 hex digits, e.g. 8e9e05c52164694d)`);
  }
  const id = BigInt(`0x${digits}`);
  if (id > max) throw badArgument(`${what} "${text}" is out of range (at most ${max.toString(16)})`);
  return id;
}

/**
 * Decimal-SI sizes like etcd's (go-humanize): 20480 → "20 kB". go-humanize rounds to one decimal
 * first, then prints 10 and above with Go's %.0f, which takes an exact half to the even neighbour
 * (106.5 → "106", 107.5 → "108"), where toFixed rounds it up.
 */
export function humanBytes(bytes: bigint | number): string {
  const value = Number(bytes);
  if (value < 10) return `${value} B`;
  const units = ["B", "kB", "MB", "GB", "TB", "PB"];
  const exponent = Math.min(Math.floor(Math.log(value) / Math.log(1000)), units.length - 1);
  const scaled = Math.floor((value / 1000 ** exponent) * 10 + 0.5) / 10;
  if (scaled < 10) return `${scaled.toFixed(1)} ${units[exponent]}`;
  const whole = Math.floor(scaled);
  const up = scaled - whole > 0.5 || (scaled - whole === 0.5 && whole % 2 === 1);
  return `${up ? whole + 1 : whole} ${units[exponent]}`;
}

function snakeCase(name: string): string {
  // Upper-case keys ("Endpoint", "Status") are etcdctl's own wrapper names and stay as they are.
  return /^[A-Z]/.test(name) ? name : name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

const BIGINT_MARK = "\u0000bigint:";
const NONE_KEPT: ReadonlySet<string> = new Set();

/** Go's `omitempty`: the zero values encoding/json leaves out of a message's JSON. */
function isEmpty(value: unknown): boolean {
  if (value === undefined || value === null || value === false || value === 0 || value === 0n) return true;
  if (value === "") return true;
  return (value instanceof Uint8Array || Array.isArray(value)) && value.length === 0;
}

function plain(value: unknown, keep: ReadonlySet<string>, omitEmpty: boolean): unknown {
  if (typeof value === "bigint") return `${BIGINT_MARK}${value}`;
  if (value instanceof Uint8Array) return Buffer.from(value).toString("base64");
  if (Array.isArray(value)) return value.map((inner) => plain(inner, keep, omitEmpty));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value)
        .filter(([, inner]) => inner !== undefined && !(omitEmpty && isEmpty(inner)))
        // A response header's fields are snake_case wherever the message around it spells its own.
        .map(([k, inner]) => [
          keep.has(k) ? k : snakeCase(k),
          plain(inner, k === "header" ? NONE_KEPT : keep, omitEmpty),
        ]),
    );
  }
  return value;
}

/** The camel-case field names of etcd's StatusResponse (rpc.proto spells them so; etcdctl prints them so). */
export const ETCD_STATUS_FIELDS: ReadonlySet<string> = new Set([
  "dbSize",
  "raftIndex",
  "raftTerm",
  "raftAppliedIndex",
  "dbSizeInUse",
  "isLearner",
]);

/**
 * JSON with proto field names (snake_case, except `keep`: names the proto itself writes in camel
 * case), bigints as exact integer literals and bytes as base64, which is how etcd's JSON output
 * carries keys and values.
 */
export function toJson(value: unknown, keep: ReadonlySet<string> = new Set()): string {
  return stringify(plain(value, keep, false));
}

/** JSON text of a `plain` value: the marked bigints become exact integer literals. */
function stringify(plain: unknown): string {
  return JSON.stringify(plain).replace(/"\\u0000bigint:(-?\d+)"/g, "$1");
}

/**
 * A KV message as etcdctl prints it with `-w json`: Go's encoding/json over the generated structs,
 * whose fields are all `omitempty`, so zero values (a `false`, a 0, an empty list or byte string)
 * are left out; a missing key's answer is its header alone.
 */
export function toJsonOmitEmpty(value: unknown): string {
  return stringify(plain(value, NONE_KEPT, true));
}

/** A bordered table in etcdctl's style: centred upper-case headers, right-aligned cells. */
export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const rule = `+${widths.map((w) => "-".repeat(w + 2)).join("+")}+`;
  const centre = (text: string, width: number) => {
    // As Go's tablewriter, which etcdctl uses: an odd gap leaves the extra space on the right.
    const left = Math.floor((width - text.length) / 2);
    return " ".repeat(left) + text + " ".repeat(width - text.length - left);
  };
  const head = `|${headers.map((h, i) => ` ${centre(h, widths[i]!)} `).join("|")}|`;
  const body = rows.map((r) => `|${r.map((c, i) => ` ${c.padStart(widths[i]!)} `).join("|")}|`);
  return [rule, head, rule, ...body, rule].join("\n");
}

/** Where commands write: stdout/stderr streams plus whether stderr is an interactive terminal. */
export interface CtlIo {
  out(text: string): void;
  err(text: string): void;
  readonly stderrIsTty: boolean;
  /** Aborted when the user interrupts (Ctrl-C); long-running commands (watch) stop on it. */
  readonly signal?: AbortSignal;
  /** One line of raw bytes (a key or a value), so binary values pass unchanged; `out` otherwise. */
  outBytes?(bytes: Uint8Array): void;
  /** Standard input, as etcdctl reads it for `put` without a value: every byte, none trimmed. */
  readStdin?(): Promise<string | Uint8Array>;
  /**
   * Standard input a line at a time (without its newline), for `watch -i`; `close` stops reading
   * it (so that it keeps the process alive no longer).
   */
  readLines?(): AsyncIterable<string> & { close?(): void };
}
