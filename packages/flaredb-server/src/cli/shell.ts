// flaredbctl's interactive SQL shell: statements may span lines and run when a line ends the
// statement with `;`; dot-commands (.tables, .schema, .backup, .restore, ...) run at once. History
// is kept in ~/.flaredb_history (or $FLAREDB_HISTORY_FILE).

import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { significant, splitStatements, TokenKind, tokenize } from "../sql/tokenizer.js";
import type { FlareDbConnection } from "./client.js";
import { cellText } from "./format.js";
import {
  backupTo,
  type ConsistencyName,
  consistencyNames,
  describeBackup,
  type OutputFormat,
  query,
  renderOutcomes,
  restoreFrom,
  runSql,
} from "./operations.js";

const historyMax = 1000;

const help = `Enter SQL statements ending with ";" (they may span lines). Commands:
  .tables                      list tables
  .schema [TABLE]              show CREATE statements
  .backup FILE [sql|sqlite]    write a backup of the database to FILE
  .restore FILE                load a backup into a fresh database
  .mode table|json             output format
  .consistency LEVEL           read consistency: ${consistencyNames.join(", ")}
  .help                        this text
  .quit                        leave (also Ctrl-D)`;

/**
 * True when `text` ends a statement: its last significant token is a semicolon at the top level
 * (not one inside a CREATE TRIGGER body, and not inside an unterminated string or comment).
 */
export function statementComplete(text: string): boolean {
  try {
    const sig = significant(tokenize(text));
    if (sig.length === 0 || sig[sig.length - 1]!.kind !== TokenKind.Semicolon) return false;
    // Appending a probe statement shows whether the final semicolon closed a statement: if it did,
    // the probe comes out as a statement of its own.
    const parts = splitStatements(`${text}\nSELECT 1`);
    return parts[parts.length - 1] === "SELECT 1";
  } catch {
    return false;
  }
}

export interface ShellOptions {
  format: OutputFormat;
  consistency: ConsistencyName;
  input?: NodeJS.ReadableStream;
  output?: NodeJS.WritableStream;
}

export async function runShell(conn: FlareDbConnection, o: ShellOptions): Promise<void> {
  const output = o.output ?? process.stdout;
  const input = o.input ?? process.stdin;
  const interactive = (input as { isTTY?: boolean }).isTTY === true;
  const historyFile = process.env.FLAREDB_HISTORY_FILE ?? join(homedir(), ".flaredb_history");
  const rl = createInterface({
    input,
    output,
    terminal: interactive,
    history: interactive ? loadHistory(historyFile) : [],
    historySize: historyMax,
  });
  const state = { format: o.format, consistency: o.consistency };
  const print = (text: string) => output.write(`${text}\n`);
  if (interactive) print(`flaredb shell on ${conn.endpointUrls.join(", ")} — .help for commands`);
  let buffer = "";
  // Piped input (a script) gets no prompts, only answers.
  const prompt = () => {
    if (!interactive) return;
    rl.setPrompt(buffer === "" ? "flaredb> " : "   ...> ");
    rl.prompt();
  };
  prompt();
  for await (const line of rl) {
    if (buffer === "" && line.trim().startsWith(".")) {
      remember(historyFile, line, interactive);
      if ((await dotCommand(conn, line.trim(), state, print)) === "quit") break;
    } else {
      buffer = buffer === "" ? line : `${buffer}\n${line}`;
      if (statementComplete(buffer)) {
        remember(historyFile, buffer.replace(/\n/g, " "), interactive);
        const script = buffer;
        buffer = "";
        await report(print, () =>
          runSql(conn, script, { readConsistency: state.consistency }).then((r) =>
            renderOutcomes(r, state.format),
          ),
        );
      }
    }
    prompt();
  }
  rl.close();
}

async function report(print: (t: string) => void, work: () => Promise<string>): Promise<void> {
  try {
    print(await work());
  } catch (err) {
    print(`Error: ${(err as Error).message}`);
  }
}

function loadHistory(file: string): string[] {
  if (!existsSync(file)) return [];
  // readline wants the newest entry first.
  return readFileSync(file, "utf8").split("\n").filter(Boolean).slice(-historyMax).reverse();
}

function remember(file: string, line: string, interactive: boolean): void {
  if (!interactive || line.trim() === "") return;
  try {
    appendFileSync(file, `${line}\n`, { mode: 0o600 });
  } catch {
    // History is a convenience: an unwritable home directory must not stop the shell.
  }
}

async function dotCommand(
  conn: FlareDbConnection,
  line: string,
  state: { format: OutputFormat; consistency: ConsistencyName },
  print: (t: string) => void,
): Promise<"quit" | undefined> {
  const [cmd, ...args] = line.split(/\s+/);
  switch (cmd) {
    case ".quit":
    case ".exit":
      return "quit";
    case ".help":
      print(help);
      return;
    case ".tables":
      await report(print, async () => {
        const r = await query(
          conn,
          {
            sql: "SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '\\_flaredb\\_%' ESCAPE '\\' ORDER BY name",
            positional: [],
            named: [],
          },
          state.consistency,
        );
        return r.rows.map((row) => cellText(row[0])).join("  ") || "(no tables)";
      });
      return;
    case ".schema":
      await report(print, async () => {
        const filter = args[0] ? " AND tbl_name = ?" : "";
        const r = await query(
          conn,
          {
            sql: `SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '\\_flaredb\\_%' ESCAPE '\\'${filter} ORDER BY rowid`,
            positional: args[0] ? [{ textValue: args[0] }] : [],
            named: [],
          },
          state.consistency,
        );
        return r.rows.map((row) => `${cellText(row[0])};`).join("\n") || "(no schema)";
      });
      return;
    case ".backup":
      if (!args[0]) return void print("usage: .backup FILE [sql|sqlite]");
      await report(print, async () =>
        describeBackup(await backupTo(conn, args[0]!, args[1] === "sqlite" ? "sqlite" : "sql"), state.format),
      );
      return;
    case ".restore":
      if (!args[0]) return void print("usage: .restore FILE");
      await report(print, async () => {
        const r = await restoreFrom(conn, args[0]!);
        return `restored at raft index ${r.raftIndex}\n${r.info ? describeBackup(r.info, state.format) : ""}`;
      });
      return;
    case ".mode":
      if (args[0] !== "table" && args[0] !== "json") return void print("usage: .mode table|json");
      state.format = args[0];
      return;
    case ".consistency":
      if (!consistencyNames.includes(args[0] as ConsistencyName))
        return void print(`usage: .consistency ${consistencyNames.join("|")}`);
      state.consistency = args[0] as ConsistencyName;
      return;
    default:
      print(`unknown command ${cmd}; .help lists the commands`);
      return;
  }
}
