// Makes SQLite's non-deterministic functions deterministic. Every member applies an entry with the
// same context: the leader's timestamp stands in for the clock and a PRNG seeded from the entry's
// seed stands in for SQLite's randomness. The built-ins are replaced on the connection by
// application-defined functions that read the current context; the CURRENT_* keywords are rewritten
// into calls of those functions by the statement inspector (see inspect.ts).

import type Database from "better-sqlite3";
import { FlareDbError } from "../errors.js";

/** xoshiro128** seeded through splitmix32: small, fast, and the same on every platform. */
export class SeededPrng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: bigint) {
    const lo = Number(BigInt.asUintN(32, seed)) | 0;
    const hi = Number(BigInt.asUintN(32, seed >> 32n)) | 0;
    // Both halves reach every state word, so seeds differing only in their high bits diverge at once.
    let state = lo ^ Math.imul(hi ^ (hi >>> 16), 0x85ebca6b);
    const next = (): number => {
      state = (state + 0x9e3779b9) | 0;
      let z = state;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    state ^= hi;
    this.c = next();
    this.d = next() | 1; // never the all-zero state
  }

  nextUint32(): number {
    const rotl = (x: number, k: number): number => (x << k) | (x >>> (32 - k));
    const result = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return result;
  }

  nextInt64(): bigint {
    const hi = BigInt(this.nextUint32());
    const lo = BigInt(this.nextUint32());
    return BigInt.asIntN(64, (hi << 32n) | lo);
  }

  bytes(count: number): Buffer {
    const out = Buffer.alloc(count);
    for (let i = 0; i < count; i += 4) {
      const v = this.nextUint32();
      for (let k = 0; k < 4 && i + k < count; k++) out[i + k] = (v >>> (8 * k)) & 0xff;
    }
    return out;
  }
}

/**
 * Date-function results over 'now' for one timestamp. Entries proposed in the same millisecond share
 * it (a column default of CURRENT_TIMESTAMP runs once per inserted row), so the state machine keeps
 * one across entries and it restarts whenever the timestamp changes.
 */
export class NowCache {
  private timeMs = Number.NaN;
  private iso = "";
  private readonly results = new Map<string, unknown>();

  /** isoTime(timeMs), computed once per timestamp. */
  isoOf(timeMs: number): string {
    this.moveTo(timeMs);
    if (this.iso === "") this.iso = isoTime(timeMs);
    return this.iso;
  }

  /** The result memoised under `key` for `timeMs`, computed by `compute` the first time. */
  memo(timeMs: number, key: string, compute: () => unknown): unknown {
    this.moveTo(timeMs);
    if (this.results.has(key)) return this.results.get(key);
    const value = compute();
    this.results.set(key, value);
    return value;
  }

  private moveTo(timeMs: number): void {
    if (timeMs === this.timeMs) return;
    this.timeMs = timeMs;
    this.iso = "";
    this.results.clear();
  }
}

/**
 * What the replaced functions read: the entry's time and randomness, and per-entry counters. The
 * PRNG is created on first use: most statements never call random() or randomblob(), and seeding
 * one per entry shows in the apply profile.
 */
export class DeterminismContext {
  /** Value of changes() / last_insert_rowid() as of the previous statement of this entry. */
  changes = 0n;
  lastInsertRowid = 0n;
  private prng: SeededPrng | undefined;

  /** `seed` is the entry's seed, or a function giving one (local reads draw it only when used). */
  constructor(
    readonly timeMs: number,
    private readonly seed: bigint | (() => bigint),
    readonly now: NowCache = new NowCache(),
  ) {}

  get random(): SeededPrng {
    this.prng ??= new SeededPrng(typeof this.seed === "bigint" ? this.seed : this.seed());
    return this.prng;
  }
}

/** SQLite's own largest blob; randomblob beyond it fails there too. */
const randomBlobBytesMax = 1_000_000_000;

/** The UTC text SQLite itself would produce for 'now', with millisecond precision. */
export function isoTime(timeMs: number): string {
  return new Date(timeMs).toISOString().replace("T", " ").replace("Z", "");
}

type DateFunction = "date" | "time" | "datetime" | "julianday" | "unixepoch" | "strftime" | "timediff";
/** For each date function: which argument positions hold time values (the rest are modifiers). */
const timeValueArgs: Record<DateFunction, { first: number; count: number }> = {
  date: { first: 0, count: 1 },
  time: { first: 0, count: 1 },
  datetime: { first: 0, count: 1 },
  julianday: { first: 0, count: 1 },
  unixepoch: { first: 0, count: 1 },
  strftime: { first: 1, count: 1 },
  timediff: { first: 0, count: 2 },
};

/**
 * Installs the deterministic replacements on `db`. `context()` is consulted on every call, so the
 * state machine switches context per entry without re-registering anything. `builtin` is a
 * private connection that keeps SQLite's own date functions, used once 'now' has been replaced by the
 * entry's time.
 */
export function installDeterministicFunctions(
  db: Database.Database,
  builtin: Database.Database,
  context: () => DeterminismContext,
): void {
  db.function("random", { deterministic: false, safeIntegers: true }, () => context().random.nextInt64());
  db.function("randomblob", { deterministic: false, safeIntegers: true }, (n: unknown) => {
    const count = Math.max(1, Math.min(randomBlobBytesMax, Number(typeof n === "bigint" ? n : (n ?? 1))));
    return context().random.bytes(Number.isFinite(count) ? count : 1);
  });
  db.function("changes", { deterministic: false, safeIntegers: true }, () => context().changes);
  db.function(
    "last_insert_rowid",
    { deterministic: false, safeIntegers: true },
    () => context().lastInsertRowid,
  );
  db.function("total_changes", { deterministic: false }, () => {
    throw new FlareDbError(
      "FLAREDB_NONDETERMINISTIC",
      "total_changes() counts changes since this member opened its database and differs between members (rule: no member-local state); use changes() instead",
    );
  });
  db.function("load_extension", { varargs: true }, () => {
    throw new FlareDbError(
      "FLAREDB_STATEMENT_REFUSED",
      "load_extension() is refused (rule: no native code loaded by SQL)",
    );
  });
  const cache = new Map<string, Database.Statement>();
  for (const name of Object.keys(timeValueArgs) as DateFunction[]) {
    // Marked deterministic so that expression indexes and generated columns over date(col) keep
    // working; 'now' is fixed per entry, so the result is the same on every member either way.
    db.function(name, { varargs: true, deterministic: true, safeIntegers: true }, (...args: unknown[]) =>
      callDateFunction(builtin, cache, name, args, context()),
    );
  }
}

/** Whether `args` is a single 'now' or, for date/time/datetime, nothing (SQLite reads that as 'now'). */
function isNowAlone(args: unknown[]): boolean {
  if (args.length === 0) return true;
  const a = args[0];
  return args.length === 1 && typeof a === "string" && a.length === 3 && a.toLowerCase() === "now";
}

function callDateFunction(
  builtin: Database.Database,
  cache: Map<string, Database.Statement>,
  name: DateFunction,
  args: unknown[],
  ctx: DeterminismContext,
): unknown {
  // datetime/date/time of 'now' alone (CURRENT_TIMESTAMP, CURRENT_DATE and CURRENT_TIME, a column
  // default on every inserted row) are parts of the entry's ISO time: SQLite formats them from the
  // same value, truncating the milliseconds. No round trip through the builtin connection.
  if ((name === "datetime" || name === "date" || name === "time") && isNowAlone(args)) {
    const iso = ctx.now.isoOf(ctx.timeMs);
    return name === "datetime" ? iso.slice(0, 19) : name === "date" ? iso.slice(0, 10) : iso.slice(11, 19);
  }
  const onlyNow = args.every((a) => typeof a === "string" && a.toLowerCase() === "now");
  // The exact text is part of the key: strftime's first argument is a format ('NOW' ≠ 'now').
  const memoKey = onlyNow ? `${name}\u0000${args.join("\u0000")}` : undefined;
  const run = () => runDateFunction(builtin, cache, name, args, ctx);
  return memoKey === undefined ? run() : ctx.now.memo(ctx.timeMs, memoKey, run);
}

function runDateFunction(
  builtin: Database.Database,
  cache: Map<string, Database.Statement>,
  name: DateFunction,
  args: unknown[],
  ctx: DeterminismContext,
): unknown {
  const spec = timeValueArgs[name];
  const filled = [...args];
  // date() with no time value means 'now' in SQLite.
  while (filled.length < spec.first + spec.count && name !== "strftime") filled.push("now");
  if (name === "strftime" && filled.length === 1) filled.push("now");
  for (let i = 0; i < filled.length; i++) {
    const arg = filled[i];
    const isTimeValue = i >= spec.first && i < spec.first + spec.count;
    if (typeof arg !== "string") continue;
    const lower = arg.toLowerCase();
    if (isTimeValue && lower === "now") filled[i] = ctx.now.isoOf(ctx.timeMs);
    else if (!isTimeValue && (lower === "localtime" || lower === "utc")) {
      throw new FlareDbError(
        "FLAREDB_NONDETERMINISTIC",
        `${name}(): the '${arg}' modifier depends on each member's time zone (rule: date/time functions work in UTC only); convert on the client`,
      );
    }
  }
  const key = `${name}/${filled.length}`;
  let stmt = cache.get(key);
  if (stmt === undefined) {
    const placeholders = filled.map(() => "?").join(", ");
    stmt = builtin.prepare(`SELECT ${name}(${placeholders})`).pluck().safeIntegers(true);
    cache.set(key, stmt);
  }
  return stmt.get(...filled);
}
