// The gateway's JSON side: reading request bodies (one object, or a stream's objects as they
// arrive) and checking each field against its proto type, as etcd 3.4's gateway (grpc-gateway v1
// with golang/protobuf's jsonpb) reads them. A value of the wrong type is refused with jsonpb's
// error text instead of being coerced, so a malformed request changes nothing; unknown keys are
// ignored, as there.
import { randomBytes } from "node:crypto";
import { loadSync } from "@grpc/proto-loader";
import { GO_CONTROL_ESCAPES } from "../go-quote.js";

/** A JSON number whose text a double cannot hold exactly: a 64-bit integer, or not an integer. */
export class JsonNumber {
  constructor(readonly text: string) {}
}

/** A request body the gateway refuses (answered with gRPC INVALID_ARGUMENT, or UNKNOWN in a stream). */
export class GatewayJsonError extends Error {}

/** Marks a number token quoted by `scanJson`; a client cannot send it, as it is new each start. */
const NUMBER_MARK_NONCE = `${randomBytes(8).toString("hex")}:`;
const NUMBER_MARK = `\u0000${NUMBER_MARK_NONCE}`;
/** The mark as JSON text (a raw control character is not allowed in a JSON string). */
const NUMBER_MARK_JSON = `\\u0000${NUMBER_MARK_NONCE}`;

const reviveNumbers = (_key: string, value: unknown) =>
  typeof value === "string" && value.startsWith(NUMBER_MARK)
    ? new JsonNumber(value.slice(NUMBER_MARK.length))
    : value;

/**
 * The request of a unary call's body: its first JSON value, as etcd's gateway reads it (anything
 * after it is ignored; an empty body or `null` is an empty request). Numbers that are not integers
 * a double holds exactly are read as `JsonNumber`, so 64-bit IDs sent as JSON numbers keep every
 * digit (etcd's gateway reads them exactly) and `1.5` or `1e3` can be refused where an integer is due.
 */
export function firstJsonValue(text: string): unknown {
  const scanner = new JsonScanner();
  const [first] = scanner.push(text, 1);
  if (first !== undefined) return first;
  if (scanner.pending) throw new GatewayJsonError(scanner.endError());
  return {};
}

/** Go's limit on nested arrays and objects (encoding/json's maxNestingDepth). */
const MAX_DEPTH = 10_000;

/** A strict JSON number token (the quoting below must never turn invalid text into valid JSON). */
const NUMBER = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/;

/** Characters a number token is made of: a token runs until another character comes. */
const isNumberChar = (c: string) =>
  (c >= "0" && c <= "9") || c === "." || c === "e" || c === "E" || c === "+" || c === "-";

/**
 * Reads JSON values from text that arrives in pieces (a streamed body's messages, one after
 * another), each value once it is complete. Every value must be an object or an array (what
 * decodes into a message; anything else is refused in Go's words), or `null` (an empty message).
 * Only each new piece is scanned, with the state carried from the last one (a number or `null`
 * split between pieces included), so a body sent a byte at a time costs no more than one sent whole.
 */
export class JsonScanner {
  private depth = 0;
  private inString = false;
  private escaped = false;
  /** Per open container: whether it is an object (where a key comes after `{` and `,`). */
  private readonly objects: boolean[] = [];
  private expectKey = false;
  /** The current value's text so far, number tokens long or not integers marked. */
  private parts: string[] = [];
  private partsLength = 0;
  private marked = false;
  /** A number token under way (its end may be in the next piece). */
  private number: string | null = null;
  /** A top-level `null` under way. */
  private literal: string | null = null;

  /** Whether a value has begun and is not complete. */
  get pending(): boolean {
    return this.depth > 0 || this.literal !== null;
  }

  /**
   * Why the body ended inside a value, in Go's words: the first malformed character in what came
   * of it (Go's decoder stops there), or "unexpected EOF" when all of it was sound.
   */
  endError(): string {
    const text = this.literal ?? this.parts.join("") + (this.number ?? "");
    return goSyntaxError(text) ?? "unexpected EOF";
  }

  /** Characters held for the value under way. */
  get bufferedLength(): number {
    return this.partsLength + (this.number?.length ?? 0);
  }

  /** Takes the next piece of text; returns the values it completed (at most `max`, the rest ignored). */
  push(piece: string, max = Number.POSITIVE_INFINITY): unknown[] {
    const values: unknown[] = [];
    this.pushEach(piece, (value) => values.push(value), max);
    return values;
  }

  /**
   * Takes the next piece of text, handing each value to `each` as soon as it is complete: one
   * completed before a malformed one in the same piece is handled before the error is thrown (as
   * etcd's gateway sends a stream's messages one by one).
   */
  pushEach(piece: string, each: (value: unknown) => void, max = Number.POSITIVE_INFINITY): void {
    let count = 0;
    const emit = (value: unknown) => {
      count++;
      each(value);
    };
    // The start of the part of `piece` not yet added to the current value's text.
    let from = 0;
    for (let i = 0; i < piece.length && count < max; i++) {
      const c = piece[i]!;
      if (this.number !== null) {
        if (isNumberChar(c)) {
          this.number += c;
          continue;
        }
        this.endNumber();
        from = i;
      }
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === "\\") this.escaped = true;
        else if (c === '"') this.inString = false;
        continue;
      }
      if (this.depth === 0) {
        if (this.literal !== null || c === "n") {
          this.literal = (this.literal ?? "") + c;
          if (!"null".startsWith(this.literal))
            throw new GatewayJsonError(goSyntaxError(this.literal) ?? topLevelError("n"));
          if (this.literal === "null") {
            this.literal = null;
            emit({});
          }
          continue;
        }
        if (c === " " || c === "\t" || c === "\n" || c === "\r") continue;
        // A scalar: Go's decoder reads it whole first, so a malformed one is a syntax error (judged on
        // what this piece holds of it: a stream's scalar split between pieces is judged early).
        if (c !== "{" && c !== "[")
          throw new GatewayJsonError(goSyntaxError(piece.slice(i)) ?? topLevelError(c));
        this.parts = [];
        this.partsLength = 0;
        this.marked = false;
        from = i;
        this.open(c === "{");
        continue;
      }
      if (c === '"') this.inString = true;
      else if (c === "{" || c === "[") this.open(c === "{");
      else if (c === ":") this.expectKey = false;
      else if (c === ",") this.expectKey = this.objects[this.objects.length - 1] === true;
      else if (c === "}" || c === "]") {
        this.objects.pop();
        this.expectKey = false;
        if (--this.depth === 0) {
          this.add(piece.slice(from, i + 1));
          const json = this.parts.join("");
          this.parts = [];
          this.partsLength = 0;
          emit(this.marked ? parse(json, reviveNumbers) : parse(json));
        }
      } else if (!this.expectKey && (c === "-" || (c >= "0" && c <= "9"))) {
        this.add(piece.slice(from, i));
        this.number = c;
      }
    }
    if (count >= max) this.reset();
    else if (this.depth > 0 && this.number === null) this.add(piece.slice(from));
  }

  /** A number token has ended: added as it is, or marked when a double cannot hold it exactly. */
  private endNumber(): void {
    const token = this.number!;
    this.number = null;
    if (NUMBER.test(token) && (/[.eE]/.test(token) || !Number.isSafeInteger(Number(token)))) {
      this.add(`"${NUMBER_MARK_JSON}${token}"`);
      this.marked = true;
    } else this.add(token); // as it is: JSON.parse says what is wrong with an invalid one
  }

  private add(text: string): void {
    if (text === "") return;
    this.parts.push(text);
    this.partsLength += text.length;
  }

  private open(object: boolean): void {
    if (this.depth >= MAX_DEPTH)
      throw new GatewayJsonError(`invalid character '${object ? "{" : "["}' exceeded max depth`);
    this.depth++;
    this.objects.push(object);
    this.expectKey = object;
  }

  private reset(): void {
    this.depth = 0;
    this.inString = false;
    this.escaped = false;
    this.objects.length = 0;
    this.parts = [];
    this.partsLength = 0;
    this.number = null;
    this.literal = null;
  }
}

/** What etcd's gateway says of a body (or streamed message) that does not start an object. */
function topLevelError(c: string): string {
  const kind =
    c === '"'
      ? "string"
      : c === "t" || c === "f"
        ? "bool"
        : c === "-" || (c >= "0" && c <= "9")
          ? "number"
          : null;
  return kind === null
    ? `invalid character '${c}' looking for beginning of value`
    : `json: cannot unmarshal ${kind} into Go value of type ${MESSAGE_GO_TYPE}`;
}

function parse(json: string, reviver?: (key: string, value: unknown) => unknown): unknown {
  try {
    return JSON.parse(json, reviver);
  } catch (err) {
    throw new GatewayJsonError(goSyntaxError(json) ?? (err as Error).message);
  }
}

/** Go's quoteChar: a character as encoding/json's syntax errors show it. */
function goQuoteChar(c: string): string {
  if (c === "'") return "'\\''";
  if (c === '"') return "'\"'";
  const code = c.charCodeAt(0);
  // Go reads bytes: a character beyond ASCII is shown as its first UTF-8 byte.
  const byte = code < 0x80 ? code : Buffer.from(c)[0]!;
  const escaped = GO_CONTROL_ESCAPES[byte];
  if (escaped !== undefined) return `'${escaped}'`;
  if (byte < 0x20 || byte === 0x7f) return `'\\x${byte.toString(16).padStart(2, "0")}'`;
  return `'${String.fromCharCode(byte)}'`;
}

const isSpace = (c: string) => c === " " || c === "\t" || c === "\r" || c === "\n";
const isDigit = (c: string) => c >= "0" && c <= "9";
const isHex = (c: string) => isDigit(c) || (c >= "a" && c <= "f") || (c >= "A" && c <= "F");

/**
 * The message Go's encoding/json gives for the first syntax error in `text` (one JSON value), as
 * etcd's gateway answers a malformed body; null when the first value is whole and sound ("unexpected
 * EOF" when the text ends inside it). A state machine after Go's scanner: the same states, so the
 * same character is blamed with the same words. What follows a whole value is not read, as Go's
 * decoder does not read it.
 */
export function goSyntaxError(text: string): string | null {
  type State = (c: string) => State | string;
  const stack: ("key" | "value" | "array")[] = [];
  const error = (c: string, context: string) => `invalid character ${goQuoteChar(c)} ${context}`;
  const literal =
    (word: string, at: number, next: State): State =>
    (c) =>
      c === word[at]
        ? at + 1 === word.length
          ? next
          : literal(word, at + 1, next)
        : error(c, `in literal ${word} (expecting ${goQuoteChar(word[at]!)})`);
  const done: State = () => done;
  const endValue: State = (c) => {
    if (stack.length === 0) return done;
    if (isSpace(c)) return endValue;
    const top = stack[stack.length - 1]!;
    if (top === "key") {
      if (c === ":") {
        stack[stack.length - 1] = "value";
        return beginValue;
      }
      return error(c, "after object key");
    }
    if (top === "value") {
      if (c === ",") {
        stack[stack.length - 1] = "key";
        return beginString;
      }
      if (c === "}") {
        stack.pop();
        return endValue;
      }
      return error(c, "after object key:value pair");
    }
    if (c === ",") return beginValue;
    if (c === "]") {
      stack.pop();
      return endValue;
    }
    return error(c, "after array element");
  };
  const inString: State = (c) => {
    if (c === '"') return endValue;
    if (c === "\\") return inEscape;
    if (c.charCodeAt(0) < 0x20) return error(c, "in string literal");
    return inString;
  };
  const inEscape: State = (c) => {
    if ('bfnrt\\/"'.includes(c)) return inString;
    if (c === "u") return hex(4);
    return error(c, "in string escape code");
  };
  const hex =
    (left: number): State =>
    (c) =>
      isHex(c) ? (left === 1 ? inString : hex(left - 1)) : error(c, "in \\u hexadecimal character escape");
  const exponentDigits: State = (c) => (isDigit(c) ? exponentDigits : endValue(c));
  const exponentSign: State = (c) =>
    isDigit(c) ? exponentDigits : error(c, "in exponent of numeric literal");
  const exponent: State = (c) => (c === "+" || c === "-" ? exponentSign : exponentSign(c));
  const fraction: State = (c) => (isDigit(c) ? fraction : c === "e" || c === "E" ? exponent : endValue(c));
  const dot: State = (c) => (isDigit(c) ? fraction : error(c, "after decimal point in numeric literal"));
  const zero: State = (c) => (c === "." ? dot : c === "e" || c === "E" ? exponent : endValue(c));
  const digits: State = (c) => (isDigit(c) ? digits : zero(c));
  const negative: State = (c) =>
    c === "0" ? zero : c >= "1" && c <= "9" ? digits : error(c, "in numeric literal");
  const beginValue: State = (c) => {
    if (isSpace(c)) return beginValue;
    if (c === "{" || c === "[") {
      if (stack.length >= MAX_DEPTH) return error(c, "exceeded max depth");
      stack.push(c === "{" ? "key" : "array");
      return c === "{" ? beginStringOrEmpty : beginValueOrEmpty;
    }
    if (c === '"') return inString;
    if (c === "-") return negative;
    if (c === "0") return zero;
    if (c >= "1" && c <= "9") return digits;
    if (c === "t") return literal("true", 1, endValue);
    if (c === "f") return literal("false", 1, endValue);
    if (c === "n") return literal("null", 1, endValue);
    return error(c, "looking for beginning of value");
  };
  const beginValueOrEmpty: State = (c) => {
    if (isSpace(c)) return beginValueOrEmpty;
    if (c === "]") return endValue(c);
    return beginValue(c);
  };
  const beginString: State = (c) => {
    if (isSpace(c)) return beginString;
    if (c === '"') return inString;
    return error(c, "looking for beginning of object key string");
  };
  const beginStringOrEmpty: State = (c) => {
    if (isSpace(c)) return beginStringOrEmpty;
    if (c === "}") {
      stack[stack.length - 1] = "value";
      return endValue(c);
    }
    return beginString(c);
  };
  let state: State = beginValue;
  let started = false;
  for (const c of text) {
    const next = state(c);
    if (typeof next === "string") return next;
    if (next === done) return null;
    started ||= !isSpace(c);
    state = next;
  }
  // At the end of the text a number or literal is whole; a string, a container or a sign is not.
  const whole = stack.length === 0 && [endValue, zero, digits, fraction, exponentDigits].includes(state);
  return !started || whole ? null : "unexpected EOF";
}

/**
 * etcd's services as the gateway reads and writes them: proto names kept, 64-bit integers, enums and
 * bytes as strings, zero values left out.
 */
export function loadGatewayProtos(protoRoot: string): ReturnType<typeof loadSync> {
  return loadSync(
    ["etcd/etcdserverpb/rpc.proto", "etcd/v3lockpb/v3lock.proto", "etcd/v3electionpb/v3election.proto"],
    {
      includeDirs: [protoRoot],
      keepCase: true,
      longs: String,
      enums: String,
      bytes: String,
      defaults: false,
      oneofs: false,
    },
  );
}

/** Per message (full name): each accepted JSON key → its field. */
export type MessageFields = ReadonlyMap<string, ReadonlyMap<string, FieldInfo>>;

type IntType = "int64" | "uint64" | "int32" | "uint32";

export interface FieldInfo {
  /** The proto's own name (`range_end`), which the gateway prints. */
  readonly name: string;
  /** proto3 JSON's lowerCamelCase name (`rangeEnd`), also accepted; it wins when both are sent. */
  readonly json: string;
  readonly repeated: boolean;
  readonly kind: "message" | "enum" | "bytes" | "string" | "bool" | "int" | "float";
  /** A message field's type (full name). */
  readonly message?: string;
  readonly int?: IntType;
  /** An enum field's names, and its type as Go names it (`etcdserverpb.RangeRequest_SortOrder`). */
  readonly enumValues?: ReadonlySet<string>;
  readonly goType?: string;
}

const INT_TYPES: Readonly<Record<string, IntType>> = {
  TYPE_INT64: "int64",
  TYPE_SINT64: "int64",
  TYPE_SFIXED64: "int64",
  TYPE_UINT64: "uint64",
  TYPE_FIXED64: "uint64",
  TYPE_INT32: "int32",
  TYPE_SINT32: "int32",
  TYPE_SFIXED32: "int32",
  TYPE_UINT32: "uint32",
  TYPE_FIXED32: "uint32",
};

const INT_RANGES: Readonly<Record<IntType, readonly [bigint, bigint]>> = {
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint64: [0n, 2n ** 64n - 1n],
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
  uint32: [0n, 2n ** 32n - 1n],
};

interface FieldDescriptor {
  readonly name: string;
  readonly label: string;
  readonly type: string;
  readonly typeName: string;
}

interface EnumDescriptor {
  readonly name: string;
  readonly value: readonly { readonly name: string }[];
}

interface MessageDescriptor {
  readonly field: readonly FieldDescriptor[];
  readonly enumType?: readonly EnumDescriptor[];
}

/** proto3 JSON's name for a field: lowerCamelCase (`range_end` → `rangeEnd`). */
function jsonName(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

/** Every message's fields, from proto-loader's descriptors, under both names JSON may use. */
export function messageFields(definitions: ReturnType<typeof loadSync>): MessageFields {
  const messages = new Map<string, MessageDescriptor>();
  const enums = new Map<string, EnumDescriptor>();
  for (const [full, definition] of Object.entries(definitions)) {
    if (!("format" in definition)) continue;
    if (definition.format === "Protocol Buffer 3 DescriptorProto") {
      const message = definition.type as MessageDescriptor;
      messages.set(full, message);
      for (const e of message.enumType ?? []) enums.set(`${full}.${e.name}`, e);
    } else if (definition.format === "Protocol Buffer 3 EnumDescriptorProto") {
      enums.set(full, definition.type as EnumDescriptor);
    }
  }
  // A type name is looked up from the field's message outwards, as protoc resolves it.
  const resolve = (scope: string, typeName: string, known: ReadonlyMap<string, unknown>) => {
    for (let s = scope; ; s = s.slice(0, Math.max(0, s.lastIndexOf(".")))) {
      const candidate = s === "" ? typeName : `${s}.${typeName}`;
      if (known.has(candidate)) return candidate;
      if (s === "") throw new Error(`the gateway cannot resolve ${typeName} from ${scope}`);
    }
  };
  const out = new Map<string, Map<string, FieldInfo>>();
  for (const [full, message] of messages) {
    const fields = new Map<string, FieldInfo>();
    for (const f of message.field) {
      const base = { name: f.name, json: jsonName(f.name), repeated: f.label === "LABEL_REPEATED" };
      const typeName = f.typeName.replace(/^\./, "");
      let info: FieldInfo;
      if (f.type === "TYPE_MESSAGE")
        info = { ...base, kind: "message", message: resolve(full, typeName, messages) };
      else if (f.type === "TYPE_ENUM") {
        const enumName = resolve(full, typeName, enums);
        const dot = enumName.indexOf(".");
        info = {
          ...base,
          kind: "enum",
          enumValues: new Set(enums.get(enumName)!.value.map((v) => v.name)),
          goType: `${enumName.slice(0, dot)}.${enumName.slice(dot + 1).replaceAll(".", "_")}`,
        };
      } else if (f.type === "TYPE_BYTES") info = { ...base, kind: "bytes" };
      else if (f.type === "TYPE_STRING") info = { ...base, kind: "string" };
      else if (f.type === "TYPE_BOOL") info = { ...base, kind: "bool" };
      else if (f.type in INT_TYPES) info = { ...base, kind: "int", int: INT_TYPES[f.type] };
      else info = { ...base, kind: "float" };
      fields.set(info.json, info);
      fields.set(info.name, info);
    }
    out.set(full, fields);
  }
  return out;
}

/** How Go's JSON decoder names a message it decodes an object into. */
const MESSAGE_GO_TYPE = "map[string]json.RawMessage";

/** The JSON type of a value, as Go's decoder words it. */
function kindOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (value instanceof JsonNumber) return "number";
  if (typeof value === "boolean") return "bool";
  return typeof value;
}

function typeError(value: unknown, goType: string): GatewayJsonError {
  return new GatewayJsonError(`json: cannot unmarshal ${kindOf(value)} into Go value of type ${goType}`);
}

/**
 * A parsed JSON request as the message `type` with its fields under their proto names, ready for
 * proto-loader's codec (64-bit integers as decimal strings, bytes as base64, enums as names or
 * numbers); null fields are left out. Throws `GatewayJsonError` for a value of the wrong type.
 */
export function protoRequest(value: unknown, type: string, messages: MessageFields): Record<string, unknown> {
  if (value === null || typeof value !== "object" || Array.isArray(value) || value instanceof JsonNumber)
    throw typeError(value, MESSAGE_GO_TYPE);
  const fields = messages.get(type);
  if (fields === undefined) throw new Error(`the gateway has no fields for ${type}`);
  const input = value as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(input)) {
    const field = fields.get(key);
    // Unknown keys are ignored; with both names sent, the camelCase one is read (as jsonpb does).
    if (field === undefined || (key !== field.json && Object.hasOwn(input, field.json))) continue;
    if (v === null) continue;
    if (field.kind === "bytes" && !field.repeated) {
      out[field.name] = bytesValue(v);
      continue;
    }
    if (field.repeated) {
      if (!Array.isArray(v)) {
        if (field.kind === "enum")
          throw new GatewayJsonError(`invalid target "slice" for enum ${field.goType}`);
        throw typeError(v, "[]json.RawMessage");
      }
      out[field.name] = v.map((element) => {
        if (element !== null) return fieldValue(element, field, messages);
        // Go's decoder leaves a null element at its zero value; a null message it cannot take
        // (etcd's gateway fails on one): refused here.
        if (field.kind === "message") throw new GatewayJsonError(`a null element in the list ${field.name}`);
        return ZERO[field.kind];
      });
    } else out[field.name] = fieldValue(v, field, messages);
  }
  return out;
}

/** Each scalar kind's zero value, as the codec takes it. */
const ZERO: Readonly<Record<Exclude<FieldInfo["kind"], "message">, unknown>> = {
  bytes: "",
  string: "",
  bool: false,
  int: "0",
  enum: 0,
  float: 0,
};

function fieldValue(v: unknown, field: FieldInfo, messages: MessageFields): unknown {
  switch (field.kind) {
    case "message":
      return protoRequest(v, field.message!, messages);
    case "bytes":
      return bytesValue(v);
    case "string":
      if (typeof v !== "string") throw typeError(v, "string");
      return v;
    case "bool":
      if (typeof v !== "boolean") throw typeError(v, "bool");
      return v;
    case "int":
      return intValue(v, field.int!);
    case "enum":
      return enumValue(v, field);
    case "float":
      if (typeof v === "number") return v;
      if (v instanceof JsonNumber) return Number(v.text);
      throw typeError(v, "float64");
  }
}

function enumValue(v: unknown, field: FieldInfo): string | number {
  if (typeof v === "string") {
    if (!field.enumValues!.has(v))
      throw new GatewayJsonError(`unknown value ${JSON.stringify(v)} for enum ${field.goType}`);
    return v;
  }
  if (typeof v === "number" && v >= -(2 ** 31) && v < 2 ** 31) return v;
  if (typeof v === "number") throw numberError(String(v), field.goType!);
  if (v instanceof JsonNumber) throw numberError(v.text, field.goType!);
  throw typeError(v, field.goType!);
}

function numberError(text: string, goType: string): GatewayJsonError {
  return new GatewayJsonError(`json: cannot unmarshal number ${text} into Go value of type ${goType}`);
}

/** An integer field: a JSON number, or a string holding one (jsonpb drops the quotes and reads on). */
function intValue(v: unknown, int: IntType): string | undefined {
  let text: string | undefined;
  if (typeof v === "number") text = String(v);
  else if (v instanceof JsonNumber) text = v.text;
  else if (typeof v === "string") text = quotedNumber(v, int);
  else throw typeError(v, int);
  if (text === undefined) return undefined;
  if (!/^-?\d+$/.test(text)) throw numberError(text, int);
  const n = BigInt(text);
  const [min, max] = INT_RANGES[int];
  if (n < min || n > max) throw numberError(text, int);
  return n.toString();
}

/** The number in a quoted integer, read as Go's decoder reads the text between the quotes. */
function quotedNumber(s: string, int: IntType): string | undefined {
  const t = s.replace(/^[ \t\r\n]+/, "");
  if (t === "") throw new GatewayJsonError("unexpected end of JSON input");
  const number = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(t)?.[0];
  if (number !== undefined) {
    const rest = t.slice(number.length).replace(/^[ \t\r\n]+/, "");
    if (rest !== "") throw new GatewayJsonError(`invalid character '${rest[0]}' after top-level value`);
    return number;
  }
  if (t === "null") return undefined;
  if (t === "true" || t === "false") throw typeError(true, int);
  if (t[0] === "-")
    throw new GatewayJsonError(
      t.length === 1 ? "unexpected end of JSON input" : `invalid character '${t[1]}' in numeric literal`,
    );
  throw new GatewayJsonError(`invalid character '${t[0]}' looking for beginning of value`);
}

const BASE64 = /[A-Za-z0-9+/]/;

/**
 * A bytes field: standard base64 with its padding (line breaks skipped), or an array of byte
 * values, as Go's decoder takes them. Returned as base64 without line breaks.
 */
function bytesValue(v: unknown): string {
  if (Array.isArray(v)) {
    const bytes = v.map((b) => {
      if (b === null) return 0;
      if (typeof b === "number" && Number.isInteger(b) && b >= 0 && b <= 255) return b;
      if (typeof b === "number") throw numberError(String(b), "uint8");
      if (b instanceof JsonNumber) throw numberError(b.text, "uint8");
      throw typeError(b, "uint8");
    });
    return Buffer.from(bytes).toString("base64");
  }
  if (typeof v !== "string") throw typeError(v, "[]uint8");
  const at = base64Error(v);
  if (at !== undefined) throw new GatewayJsonError(`illegal base64 data at input byte ${at}`);
  return v.replace(/[\r\n]/g, "");
}

/** Where Go's standard base64 decoder stops on `s`, or undefined when it decodes. */
function base64Error(s: string): number | undefined {
  const newline = (i: number) => s[i] === "\n" || s[i] === "\r";
  let i = 0;
  while (i < s.length) {
    // One quantum of four characters; `j` counts the data characters read.
    for (let j = 0; j < 4; j++) {
      if (i === s.length) return j === 0 ? undefined : i - j;
      const c = s[i++]!;
      if (BASE64.test(c)) continue;
      if (c === "\n" || c === "\r") {
        j--;
        continue;
      }
      if (c !== "=" || j < 2) return i - 1;
      if (j === 2) {
        while (i < s.length && newline(i)) i++;
        if (i === s.length) return s.length;
        if (s[i] !== "=") return i - 1;
        i++;
      }
      while (i < s.length && newline(i)) i++;
      return i < s.length ? i : undefined;
    }
  }
  return undefined;
}
