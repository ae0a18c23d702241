// `watch -i`, etcdctl's interactive watch: requests read from standard input, one per line.
// `watch [options] [key] [range_end] [-- command args...]` starts a watch beside the others (its
// own flags, the same output); `progress` asks every watch for a progress notification. The
// command ends when input ends (etcdctl's "Error reading watch request line: EOF", exit 3), when a
// watch's command fails (exit 1), or on Ctrl-C.
import { setMaxListeners } from "node:events";
import type { Connection } from "../connection.js";
import { CtlError } from "../errors.js";
import type { CtlIo, OutputFormat } from "../format.js";
import { type WatchFlags, watch } from "./kv.js";

/** One `watch` request line, parsed: the range and the flags it starts a watch with. */
export interface WatchRequest {
  readonly key: string;
  readonly end: string | undefined;
  readonly flags: WatchFlags;
}

/**
 * A request line's words, as etcdctl splits them: runs of non-blank characters, "double-quoted"
 * words with Go's escapes and 'single-quoted' words taken as they are.
 */
export function argify(line: string): string[] {
  const words: string[] = [];
  const word = /"(?:[^"\\]|\\.)*"|'[^']*'|\S+/g;
  for (const [text] of line.matchAll(word)) {
    if (text.startsWith("'") && text.endsWith("'") && text.length >= 2) words.push(text.slice(1, -1));
    else if (text.startsWith('"') && text.endsWith('"') && text.length >= 2) words.push(unquote(text));
    else words.push(text);
  }
  return words;
}

const SIMPLE_ESCAPES: Readonly<Record<string, number>> = {
  a: 7,
  b: 8,
  f: 12,
  n: 10,
  r: 13,
  t: 9,
  v: 11,
  "\\": 92,
  '"': 34,
};

/** A Go string literal's text (`strconv.Unquote`): `\x..` and octal escapes are bytes, `\u` runes. */
function unquote(quoted: string): string {
  const bytes: number[] = [];
  const body = quoted.slice(1, -1);
  const goEscape = /\\(?:([abfnrtv\\"])|x([0-9a-fA-F]{2})|([0-7]{3})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8}))/y;
  for (let at = 0; at < body.length; ) {
    if (body[at] !== "\\") {
      const char = String.fromCodePoint(body.codePointAt(at)!);
      bytes.push(...Buffer.from(char));
      at += char.length;
      continue;
    }
    goEscape.lastIndex = at;
    const m = goEscape.exec(body);
    if (m === null) throw new CtlError("BAD_ARGUMENT", `invalid syntax in ${quoted}`);
    if (m[1] !== undefined) bytes.push(SIMPLE_ESCAPES[m[1]]!);
    else if (m[2] !== undefined) bytes.push(Number.parseInt(m[2], 16));
    else if (m[3] !== undefined) {
      const value = Number.parseInt(m[3], 8);
      if (value > 255) throw new CtlError("BAD_ARGUMENT", `invalid syntax in ${quoted}`);
      bytes.push(value);
    } else {
      const code = Number.parseInt(m[4] ?? m[5]!, 16);
      if (code > 0x10ffff || (code >= 0xd800 && code < 0xe000)) {
        throw new CtlError("BAD_ARGUMENT", `invalid syntax in ${quoted}`);
      }
      bytes.push(...Buffer.from(String.fromCodePoint(code)));
    }
    at = goEscape.lastIndex;
  }
  try {
    return UTF8.decode(Uint8Array.from(bytes));
  } catch {
    throw new CtlError("BAD_ARGUMENT", `${quoted} is not UTF-8 text, which a watched key given here must be`);
  }
}

const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export async function watchInteractive(
  conn: Connection,
  io: CtlIo,
  format: OutputFormat,
  parse: (words: readonly string[]) => WatchRequest,
): Promise<void> {
  if (io.readLines === undefined) {
    throw new CtlError("BAD_ARGUMENT", "watch -i reads its requests from standard input, which is not open");
  }
  // The connection first, as etcdctl makes its client before reading: its settings' errors (TLS
  // files) and an endpoint that cannot be reached end the command here, not as a bad line.
  await conn.primary();
  // The watches end with this command: on Ctrl-C, and when it ends for any other reason.
  const done = new AbortController();
  const signal = io.signal === undefined ? done.signal : AbortSignal.any([io.signal, done.signal]);
  const progress = new EventTarget();
  // One listener per watch on each: as many watches as the user starts.
  setMaxListeners(0, signal, progress);
  const watchIo: CtlIo = { ...io, signal };
  const running: Promise<void>[] = [];
  let failWith: (err: unknown) => void = () => {};
  const failed = new Promise<never>((_, reject) => {
    failWith = reject;
  });
  const interrupted = new Promise<"interrupted">((resolve) => {
    if (signal.aborted) resolve("interrupted");
    signal.addEventListener("abort", () => resolve("interrupted"), { once: true });
  });
  const source = io.readLines();
  const lines = source[Symbol.asyncIterator]();
  try {
    for (;;) {
      const next = await Promise.race([failed, interrupted, lines.next()]);
      if (next === "interrupted") return;
      if (next.done) throw new CtlError("INVALID_INPUT", "Error reading watch request line: EOF");
      const line = next.value;
      let words: string[];
      try {
        words = argify(line);
      } catch (err) {
        io.err(`Invalid command ${line} (${(err as Error).message})`);
        continue;
      }
      if (words.length === 0) {
        io.err(`Invalid command: ${line} (watch and progress supported)`);
      } else if (words[0] === "watch") {
        let request: WatchRequest;
        try {
          request = parse(words.slice(1));
        } catch (err) {
          io.err(`Invalid command ${line} (${(err as Error).message})`);
          continue;
        }
        // As etcd's client's Watch, the next line is read once this watch exists: a `progress`
        // right after it reaches it.
        let onCreated: () => void = () => {};
        const created = new Promise<void>((resolve) => {
          onCreated = resolve;
        });
        const started = watch(conn, watchIo, format, request.key, request.end, {
          ...request.flags,
          progress,
          onCreated,
        }).catch((err: unknown) => {
          // Said on stderr already ("watch was canceled (...)"): the other watches go on.
          if (err instanceof CtlError && err.code === "WATCH_CANCELED") return;
          failWith(err);
        });
        running.push(started);
        if ((await Promise.race([failed, interrupted, created])) === "interrupted") return;
      } else if (words[0] === "progress") {
        progress.dispatchEvent(new Event("progress"));
      } else {
        io.err(`Invalid command ${line} (only support watch)`);
      }
    }
  } finally {
    done.abort();
    // Standard input is not read any more: it must not keep the process alive.
    source.close?.();
    await Promise.all(running);
  }
}
