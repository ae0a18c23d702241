// One parser per option kind, as zod schemas over the raw value (a string from a flag or the
// environment, or a native TOML value). A failure carries a sentence that completes
// "<where>: ..." — e.g. `expected a whole number of milliseconds, got "abc"`.

import { resolve } from "node:path";
import { z } from "zod";
import { parseUrlList } from "../urls.js";
import type { OptionSpec } from "./option-types.js";

/** How a raw value is shown back in an error message. */
export function showRaw(raw: unknown): string {
  if (typeof raw === "string") return JSON.stringify(raw);
  if (Array.isArray(raw)) return `[${raw.map(showRaw).join(", ")}]`;
  if (typeof raw === "bigint") return raw.toString();
  if (raw !== null && typeof raw === "object") return "a table";
  return String(raw);
}

const BYTE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  k: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tib: 1024 ** 4,
};

const DURATION_UNITS_MS: Record<string, number> = { "": 1, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** A number with an optional unit suffix, from TOML integers or strings like "8GiB" / "2s". */
function withUnit(raw: unknown, units: Record<string, number>): number | undefined {
  if (typeof raw === "number") return Number.isSafeInteger(raw) ? raw : undefined;
  if (typeof raw === "bigint") return raw <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(raw) : undefined;
  if (typeof raw !== "string") return undefined;
  const match = /^\s*(-?\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$/.exec(raw);
  if (match === null) return undefined;
  const factor = units[match[2]!.toLowerCase()];
  // A fraction needs a unit to scale it to a whole number ("1.5MiB", "2.5s"; never "1.5").
  if (factor === undefined || (match[1]!.includes(".") && match[2] === "")) return undefined;
  const value = Math.round(Number(match[1]) * factor);
  return Number.isSafeInteger(value) ? value : undefined;
}

/** A duration as Go writes one (etcd's flags take them): "1h30m", "2h0m0s", "1m0.5s", in ms. */
function goDuration(raw: unknown): number | undefined {
  if (typeof raw !== "string" || !/^\s*(\d+(\.\d+)?(h|ms|m|s))+\s*$/i.test(raw)) return undefined;
  let ms = 0;
  for (const [, n, unit] of raw.trim().matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s)/gi))
    ms += Number(n) * DURATION_UNITS_MS[unit!.toLowerCase()]!;
  const rounded = Math.round(ms);
  return Number.isSafeInteger(rounded) ? rounded : undefined;
}

/** A duration as Go's time.ParseDuration takes it ("5s", "500ms", "1m30s", "1.5h", or "0"), in ms. */
export function parseGoDurationMs(text: string): number | undefined {
  return /^\s*0\s*$/.test(text) ? 0 : goDuration(text);
}

function asList(raw: unknown): string[] | undefined {
  if (typeof raw === "string")
    return raw
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "");
  if (Array.isArray(raw) && raw.every((x) => typeof x === "string")) return raw.map((s) => s.trim());
  return undefined;
}

function parseBool(raw: unknown): boolean | undefined {
  if (typeof raw === "boolean") return raw;
  if (typeof raw !== "string") return undefined;
  const text = raw.trim().toLowerCase();
  if (text === "true" || text === "1" || text === "yes") return true;
  if (text === "false" || text === "0" || text === "no") return false;
  return undefined;
}

function parseUint64(raw: unknown): bigint | undefined {
  let value: bigint | undefined;
  if (typeof raw === "bigint") value = raw;
  else if (typeof raw === "number" && Number.isSafeInteger(raw)) value = BigInt(raw);
  else if (typeof raw === "string" && /^\s*(0x[0-9a-fA-F]+|\d+)\s*$/.test(raw)) value = BigInt(raw.trim());
  return value !== undefined && value >= 0n && value < 1n << 64n ? value : undefined;
}

function rangeText(spec: OptionSpec): string {
  if (spec.type !== "int" && spec.type !== "duration-ms" && spec.type !== "bytes") return "";
  const { min, max } = spec;
  if (min !== undefined && max !== undefined) return ` between ${min} and ${max}`;
  if (min !== undefined) return ` of at least ${min}`;
  return max !== undefined ? ` of at most ${max}` : "";
}

/** What the option expects, for messages: "a whole number of milliseconds". */
export function expectedText(spec: OptionSpec): string {
  const range = rangeText(spec);
  switch (spec.type) {
    case "string":
      return "a string";
    case "int":
      return `a whole number${range}`;
    case "bool":
      return "true or false";
    case "duration-ms":
      return spec.unitRequired
        ? `a duration with its unit (such as 20s, 2h or 1m30s)${range.replace(/(\d+)/g, "$1 ms")}`
        : `a whole number of milliseconds${range}`;
    case "url-list":
      return "a comma-separated list of URLs";
    case "path":
      return "a non-empty file or directory path";
    case "enum":
      return `one of ${spec.values.map((v) => JSON.stringify(v)).join(", ")}`;
    case "bytes":
      return `a size in bytes${range} (a number, or with a unit: KB MB GB KiB MiB GiB)`;
    case "string-list":
      return "a comma-separated list of strings";
    case "uint64":
      return "an unsigned 64-bit number (decimal or 0x-prefixed hex)";
  }
}

/** Parse to the kind's value, or undefined when the raw value has the wrong form. */
function parseKind(spec: OptionSpec, raw: unknown): unknown {
  switch (spec.type) {
    case "string":
      return typeof raw === "string" ? raw : undefined;
    case "int":
      return withUnit(raw, { "": 1 });
    case "bool":
      return parseBool(raw);
    case "duration-ms":
      // As Go's durations: a bare number needs its unit, except 0.
      if (spec.unitRequired && !/^\s*[+-]?0\s*$/.test(String(raw))) {
        if (typeof raw !== "string" || /^\s*-?\d+(\.\d+)?\s*$/.test(raw)) return undefined;
      }
      return withUnit(raw, DURATION_UNITS_MS) ?? goDuration(raw);
    case "bytes":
      return withUnit(raw, BYTE_UNITS);
    case "path":
      return typeof raw === "string" && raw.trim() !== "" ? resolve(raw) : undefined;
    case "enum":
      return typeof raw === "string" && spec.values.includes(raw) ? raw : undefined;
    case "string-list":
      return asList(raw);
    case "uint64":
      return parseUint64(raw);
    case "url-list":
      return asList(raw);
  }
}

/** Range and custom checks on a parsed value: a problem sentence, or undefined. */
function checkValue(spec: OptionSpec, value: unknown): string | undefined {
  if (
    typeof value === "number" &&
    (spec.type === "int" || spec.type === "duration-ms" || spec.type === "bytes")
  ) {
    if ((spec.min !== undefined && value < spec.min) || (spec.max !== undefined && value > spec.max)) {
      return `expected ${expectedText(spec)}, got ${value}`;
    }
  }
  return spec.check?.(value as never);
}

/** The zod schema of one option: raw value in, typed value out, failures as one readable sentence. */
export function optionSchema(spec: OptionSpec): z.ZodType<unknown> {
  return z.unknown().transform((raw, ctx) => {
    const parsed = parseKind(spec, raw);
    if (parsed === undefined) {
      ctx.addIssue({ code: "custom", message: `expected ${expectedText(spec)}, got ${showRaw(raw)}` });
      return z.NEVER;
    }
    let value: unknown = parsed;
    if (spec.type === "url-list") {
      try {
        value = parseUrlList(parsed as string[]);
      } catch (err) {
        ctx.addIssue({ code: "custom", message: (err as Error).message });
        return z.NEVER;
      }
    }
    const problem = checkValue(spec, value);
    if (problem !== undefined) {
      ctx.addIssue({ code: "custom", message: problem });
      return z.NEVER;
    }
    return value;
  });
}

/** A plausible value for examples in messages and help. */
export function exampleValue(spec: OptionSpec): string {
  if (spec.example !== undefined) return spec.example;
  if (spec.default !== undefined && !spec.secret) {
    const d = spec.default;
    return Array.isArray(d) ? d.join(",") : String(d);
  }
  const byKind: Record<OptionSpec["type"], string> = {
    string: "value",
    int: String("min" in spec && spec.min !== undefined ? spec.min : 10),
    bool: "true",
    "duration-ms": "1000",
    "url-list": "http://127.0.0.1:2379",
    path: "/var/lib/photoncloud",
    enum: spec.type === "enum" ? (spec.values[0] ?? "value") : "value",
    bytes: "8GiB",
    "string-list": "a,b",
    uint64: "0x8e9e05c52164694d",
  };
  return byKind[spec.type];
}

/** How the example is written in a TOML file (strings quoted, lists as arrays). */
export function tomlExample(spec: OptionSpec): string {
  const example = exampleValue(spec);
  if (spec.type === "int" || spec.type === "bool") return example;
  // A duration with its unit is a TOML string; a bare number of milliseconds is not.
  if (spec.type === "duration-ms") return /^-?\d+$/.test(example) ? example : JSON.stringify(example);
  if (spec.type === "url-list" || spec.type === "string-list") {
    return `[${example
      .split(",")
      .map((s) => JSON.stringify(s))
      .join(", ")}]`;
  }
  return JSON.stringify(example);
}
