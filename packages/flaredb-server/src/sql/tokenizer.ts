// A lexer for SQLite's SQL dialect. flaredb rewrites and classifies statements before SQLite sees
// them; doing that on raw text with regular expressions would also touch string literals, comments
// and quoted identifiers, so every decision is taken on tokens instead.

export const TokenKind = {
  Whitespace: "whitespace",
  Comment: "comment",
  /** A bare word: keyword or unquoted identifier. */
  Word: "word",
  /** "ident", [ident] or `ident`. */
  QuotedIdentifier: "quoted-identifier",
  String: "string",
  Blob: "blob",
  Number: "number",
  /** ?, ?NNN, :name, @name, $name. */
  Parameter: "parameter",
  Semicolon: "semicolon",
  Punctuation: "punctuation",
} as const;
export type TokenKind = (typeof TokenKind)[keyof typeof TokenKind];

export interface Token {
  readonly kind: TokenKind;
  /** Offsets into the source text: [start, end). */
  readonly start: number;
  readonly end: number;
  readonly text: string;
}

/** The lexer met text that is not SQL (an unterminated string, comment or quoted identifier). */
export class SqlLexError extends Error {
  readonly code = "FLAREDB_SQL_SYNTAX";
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message);
  }
}

const isSpace = (c: string): boolean => c === " " || c === "\t" || c === "\n" || c === "\r" || c === "\f";
const isDigit = (c: string): boolean => c >= "0" && c <= "9";
// SQLite treats every byte >= 0x80 as an identifier character; so do we.
const isIdentStart = (c: string): boolean =>
  (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || c === "_" || c.charCodeAt(0) >= 0x80;
const isIdentPart = (c: string): boolean => isIdentStart(c) || isDigit(c) || c === "$";

/** Splits `sql` into tokens covering every character (whitespace and comments included). */
export function tokenize(sql: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const start = i;
    const kind = scanOne(sql, i);
    i = kind.end;
    tokens.push({ kind: kind.kind, start, end: i, text: sql.slice(start, i) });
  }
  return tokens;
}

function scanOne(sql: string, i: number): { kind: TokenKind; end: number } {
  const c = sql[i]!;
  const next = sql[i + 1] ?? "";
  if (isSpace(c)) {
    let j = i + 1;
    while (j < sql.length && isSpace(sql[j]!)) j++;
    return { kind: TokenKind.Whitespace, end: j };
  }
  if (c === "-" && next === "-") {
    const nl = sql.indexOf("\n", i);
    return { kind: TokenKind.Comment, end: nl < 0 ? sql.length : nl + 1 };
  }
  if (c === "/" && next === "*") {
    const close = sql.indexOf("*/", i + 2);
    // SQLite accepts an unterminated block comment at the end of input.
    return { kind: TokenKind.Comment, end: close < 0 ? sql.length : close + 2 };
  }
  if (c === "'") return { kind: TokenKind.String, end: scanQuoted(sql, i, "'") };
  if (c === '"') return { kind: TokenKind.QuotedIdentifier, end: scanQuoted(sql, i, '"') };
  if (c === "`") return { kind: TokenKind.QuotedIdentifier, end: scanQuoted(sql, i, "`") };
  if (c === "[") {
    const close = sql.indexOf("]", i + 1);
    if (close < 0) throw new SqlLexError("unterminated [identifier]", i);
    return { kind: TokenKind.QuotedIdentifier, end: close + 1 };
  }
  if ((c === "x" || c === "X") && next === "'") {
    return { kind: TokenKind.Blob, end: scanQuoted(sql, i + 1, "'") };
  }
  if (isDigit(c) || (c === "." && isDigit(next))) return { kind: TokenKind.Number, end: scanNumber(sql, i) };
  if (c === "?") {
    let j = i + 1;
    while (j < sql.length && isDigit(sql[j]!)) j++;
    return { kind: TokenKind.Parameter, end: j };
  }
  if ((c === ":" || c === "@" || c === "$") && isIdentPart(next)) {
    let j = i + 1;
    while (j < sql.length && isIdentPart(sql[j]!)) j++;
    return { kind: TokenKind.Parameter, end: j };
  }
  if (isIdentStart(c)) {
    let j = i + 1;
    while (j < sql.length && isIdentPart(sql[j]!)) j++;
    return { kind: TokenKind.Word, end: j };
  }
  if (c === ";") return { kind: TokenKind.Semicolon, end: i + 1 };
  const two = c + next;
  if (["||", "<=", ">=", "==", "!=", "<>", "<<", ">>", "->"].includes(two)) {
    return { kind: TokenKind.Punctuation, end: sql.startsWith("->>", i) ? i + 3 : i + 2 };
  }
  return { kind: TokenKind.Punctuation, end: i + 1 };
}

/** Returns the offset just past the closing quote; a doubled quote is an escaped quote. */
function scanQuoted(sql: string, i: number, quote: string): number {
  let j = i + 1;
  for (;;) {
    const close = sql.indexOf(quote, j);
    if (close < 0) throw new SqlLexError(`unterminated ${quote}quoted${quote} text`, i);
    if (sql[close + 1] === quote) {
      j = close + 2;
      continue;
    }
    return close + 1;
  }
}

function scanNumber(sql: string, i: number): number {
  let j = i;
  if (sql[j] === "0" && (sql[j + 1] === "x" || sql[j + 1] === "X")) {
    j += 2;
    while (j < sql.length && /[0-9a-fA-F_]/.test(sql[j]!)) j++;
    return j;
  }
  while (j < sql.length && (isDigit(sql[j]!) || sql[j] === "_")) j++;
  if (sql[j] === ".") {
    j++;
    while (j < sql.length && (isDigit(sql[j]!) || sql[j] === "_")) j++;
  }
  if (sql[j] === "e" || sql[j] === "E") {
    const sign = sql[j + 1] === "+" || sql[j + 1] === "-" ? 1 : 0;
    if (isDigit(sql[j + 1 + sign] ?? "")) {
      j += 1 + sign;
      while (j < sql.length && isDigit(sql[j]!)) j++;
    }
  }
  return j;
}

/** Tokens that matter to the grammar (no whitespace, no comments). */
export function significant(tokens: readonly Token[]): Token[] {
  return tokens.filter((t) => t.kind !== TokenKind.Whitespace && t.kind !== TokenKind.Comment);
}

/** The upper-cased text of a bare word, or "" for any other token. */
export function keyword(token: Token | undefined): string {
  return token !== undefined && token.kind === TokenKind.Word ? token.text.toUpperCase() : "";
}

/** The name an identifier token denotes: quotes removed and doubled quotes undone. */
export function identifierName(token: Token): string {
  if (token.kind === TokenKind.QuotedIdentifier) {
    const q = token.text[0]!;
    const body = token.text.slice(1, -1);
    if (q === "[") return body;
    return body.split(q + q).join(q);
  }
  if (token.kind === TokenKind.String) return token.text.slice(1, -1).split("''").join("'");
  return token.text;
}

/**
 * Splits a script into statements on top-level semicolons. A CREATE TRIGGER body (BEGIN ... END)
 * holds semicolons of its own; CASE ... END inside it is tracked so its END does not end the body.
 * Returns each statement's text without the terminating semicolon; empty statements are dropped.
 */
export function splitStatements(sql: string): string[] {
  const tokens = tokenize(sql);
  const out: string[] = [];
  let start = 0;
  let words: string[] = [];
  let triggerDepth = -1; // -1: not inside a trigger body
  for (const t of tokens) {
    const kw = keyword(t);
    if (kw !== "") {
      if (words.length < 4) words.push(kw);
      if (isTriggerHead(words)) {
        if (kw === "BEGIN" && triggerDepth < 0) triggerDepth = 0;
        else if (kw === "CASE" && triggerDepth >= 0) triggerDepth++;
        else if (kw === "END" && triggerDepth > 0) triggerDepth--;
        else if (kw === "END" && triggerDepth === 0) triggerDepth = -2; // body closed
      }
    }
    // Inside a trigger body (depth >= 0) a semicolon ends a body statement, not the CREATE TRIGGER.
    if (t.kind === TokenKind.Semicolon && triggerDepth < 0) {
      pushStatement(out, sql.slice(start, t.start));
      start = t.end;
      words = [];
      triggerDepth = -1;
    }
  }
  pushStatement(out, sql.slice(start));
  return out;
}

function isTriggerHead(words: readonly string[]): boolean {
  if (words[0] !== "CREATE") return false;
  return (
    words[1] === "TRIGGER" || ((words[1] === "TEMP" || words[1] === "TEMPORARY") && words[2] === "TRIGGER")
  );
}

function pushStatement(out: string[], text: string): void {
  if (significant(tokenize(text)).length > 0) out.push(text.trim());
}
