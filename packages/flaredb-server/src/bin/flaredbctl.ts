// flaredbctl: the flaredb command-line client (SQL, shell, backups, members, maintenance).
// Exit status: 0 on success, 1 when a call or a statement failed, 2 for bad usage.

import { Command, CommanderError, Option } from "commander";
import {
  endpointStatus,
  leaderTransfer,
  maintenanceBegin,
  maintenanceEnd,
  maintenanceStatus,
  memberAdd,
  memberList,
  memberRemove,
  memberUpsert,
  renderHistory,
  renderMaintenance,
  renderMembers,
  schemaHistory,
} from "../cli/admin.js";
import { CallError, FlareDbConnection } from "../cli/client.js";
import { hexId, toJson } from "../cli/format.js";
import {
  anyStatementFailed,
  backupTo,
  type ConsistencyName,
  consistencyNames,
  describeBackup,
  type OutputFormat,
  renderOutcomes,
  restoreFrom,
  runSql,
} from "../cli/operations.js";
import { runShell } from "../cli/shell.js";
import { FlareDbError } from "../errors.js";
import { FLAREDB_VERSION } from "../version.js";

interface GlobalOptions {
  endpoints: string;
  writeOut: OutputFormat;
  cacert?: string;
  cert?: string;
  key?: string;
  commandTimeout: string;
}

interface Io {
  out(text: string): void;
  err(text: string): void;
}

type Action = (
  conn: FlareDbConnection,
  g: GlobalOptions,
) => Promise<string | { text: string; failed: boolean }>;

function connect(g: GlobalOptions): FlareDbConnection {
  return new FlareDbConnection({
    endpoints: g.endpoints
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean),
    cacert: g.cacert,
    cert: g.cert,
    key: g.key,
    timeoutMs: Number(g.commandTimeout) * 1000,
  });
}

function buildProgram(io: Io, state: { exitCode: number }): Command {
  const program = new Command("flaredbctl")
    .description("flaredb client: SQL (and an interactive shell), backups, members, maintenance windows")
    .version(FLAREDB_VERSION)
    .option("--endpoints <list>", "comma-separated member client URLs, tried in order", "127.0.0.1:2479")
    .addOption(
      new Option("-w, --write-out <format>", "output format").choices(["table", "json"]).default("table"),
    )
    .option("--cacert <file>", "CA bundle to verify https:// endpoints")
    .option("--cert <file>", "client certificate (mTLS)")
    .option("--key <file>", "client private key (mTLS)")
    .option("--command-timeout <seconds>", "deadline of each call", "30")
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) });

  const run = (action: Action) => async () => {
    const g = program.opts<GlobalOptions>();
    const conn = connect(g);
    try {
      const r = await action(conn, g);
      const { text, failed } = typeof r === "string" ? { text: r, failed: false } : r;
      if (text !== "") io.out(text);
      if (failed) state.exitCode = 1;
    } finally {
      conn.close();
    }
  };

  addSqlCommands(program, run);
  addBackupCommands(program, run);
  addClusterCommands(program, run);
  addMaintenanceCommands(program, run);
  return program;
}

type Runner = (action: Action) => () => Promise<void>;

function addSqlCommands(program: Command, run: Runner): void {
  program
    .command("sql <statements>")
    .description("run SQL: writes go to Execute (one batch), reads to Query")
    .option("--param <value>", "bind a parameter (repeat; :name=value for named)", collect, [])
    .addOption(
      new Option("--consistency <level>", "send every statement to Query at this level").choices([
        ...consistencyNames,
      ]),
    )
    .option("--freshness <ms>", "with --consistency none: refuse if the member is staler than this", "0")
    .option("--tx", "run all statements as one all-or-nothing transaction")
    .action(
      (
        statements: string,
        o: { param: string[]; consistency?: ConsistencyName; freshness: string; tx?: boolean },
      ) =>
        run(async (conn, g) => {
          const outcomes = await runSql(conn, statements, {
            params: o.param,
            consistency: o.consistency,
            freshnessMs: Number(o.freshness),
            tx: o.tx === true,
          });
          return { text: renderOutcomes(outcomes, g.writeOut), failed: anyStatementFailed(outcomes) };
        })(),
    );
  program
    .command("shell", { isDefault: false })
    .description(
      "interactive SQL shell (history, multi-line statements, .tables, .schema, .backup, .restore)",
    )
    .addOption(
      new Option("--consistency <level>", "read consistency")
        .choices([...consistencyNames])
        .default("linearizable"),
    )
    .action((o: { consistency: ConsistencyName }) =>
      run(async (conn, g) => {
        await runShell(conn, { format: g.writeOut, consistency: o.consistency });
        return "";
      })(),
    );
}

function addBackupCommands(program: Command, run: Runner): void {
  program
    .command("backup <file>")
    .description("stream a backup into FILE (checksummed; verified before it is kept)")
    .addOption(
      new Option("--format <format>", "logical SQL dump or SQLite image")
        .choices(["sql", "sqlite"])
        .default("sql"),
    )
    .addOption(
      new Option("--consistency <level>", "state to back up")
        .choices(["none", "weak", "linearizable"])
        .default("linearizable"),
    )
    .action((file: string, o: { format: "sql" | "sqlite"; consistency: ConsistencyName }) =>
      run(async (conn, g) =>
        describeBackup(await backupTo(conn, file, o.format, o.consistency), g.writeOut),
      )(),
    );
  program
    .command("restore <file>")
    .description("load a backup into a fresh cluster (verified locally, then through the log)")
    .action((file: string) =>
      run(async (conn, g) => {
        const r = await restoreFrom(conn, file);
        if (g.writeOut === "json") return toJson(r);
        return `restored at raft index ${r.raftIndex}\n${r.info ? describeBackup(r.info, "table") : ""}`;
      })(),
    );
}

function addClusterCommands(program: Command, run: Runner): void {
  const member = program.command("member").description("cluster membership");
  member
    .command("list")
    .action(() => run(async (conn, g) => renderMembers(await memberList(conn), g.writeOut))());
  member
    .command("add <name>")
    .requiredOption("--peer-urls <urls>", "the new member's peer URLs, comma-separated")
    .option("--client-urls <urls>", "the new member's client URLs, comma-separated")
    .option("--learner", "add as a learner (non-voting) member")
    .option("--id <hex>", "explicit member ID (default: derived from the name and the cluster token)")
    .action((name: string, o: { peerUrls: string; clientUrls?: string; learner?: boolean; id?: string }) =>
      run(async (conn, g) => {
        const r = await memberAdd(conn, name, o);
        const what = r.updated ? "updated" : "added";
        if (g.writeOut === "json")
          return toJson({ ...r, member: r.member && { ...r.member, id: hexId(r.member.id) } });
        return `member ${hexId(r.member?.id ?? 0n)} ${what}\n${renderMembers(r.members, "table")}`;
      })(),
    );
  member
    .command("promote <id>")
    .description("promote a learner to a voting member")
    .action((id: string) =>
      run(async (conn, g) =>
        renderMembers((await memberUpsert(conn, id, { promote: true })).members, g.writeOut),
      )(),
    );
  member
    .command("update <id>")
    .description("replace a member's peer and/or client URLs in place")
    .option("--peer-urls <urls>", "new peer URLs")
    .option("--client-urls <urls>", "new client URLs")
    .action((id: string, o: { peerUrls?: string; clientUrls?: string }) =>
      run(async (conn, g) => renderMembers((await memberUpsert(conn, id, o)).members, g.writeOut))(),
    );
  member
    .command("remove <id>")
    .description("remove a member (the leader too: the others elect a new one)")
    .action((id: string) =>
      run(async (conn, g) => renderMembers((await memberRemove(conn, id)).members, g.writeOut))(),
    );
  const endpoint = program.command("endpoint").description("the endpoints themselves");
  endpoint
    .command("status")
    .description("status of every endpoint in --endpoints")
    .action(() => run((conn, g) => endpointStatus(conn, g.writeOut))());
  program
    .command("leader")
    .description("leadership")
    .command("transfer <target>")
    .description("hand leadership to a member (by name or hex ID)")
    .action((target: string) =>
      run(async (conn) => {
        const r = await leaderTransfer(conn, target);
        return `leadership transferred; leader is now ${hexId(r.header?.leaderId ?? 0n)}`;
      })(),
    );
}

function addMaintenanceCommands(program: Command, run: Runner): void {
  const m = program.command("maintenance").description("maintenance windows for destructive DDL");
  m.command("begin")
    .description("open a window against a fresh backup (take one with `flaredbctl backup FILE`)")
    .requiredOption("--backup <file>", "a backup taken at the current state")
    .option("--reason <text>", "why the window is opened (recorded)", "")
    .action((o: { backup: string; reason: string }) =>
      run(async (conn, g) =>
        renderMaintenance((await maintenanceBegin(conn, o.backup, o.reason)).state, g.writeOut),
      )(),
    );
  m.command("end")
    .description("close the window")
    .action(() =>
      run(async (conn, g) => renderMaintenance((await maintenanceEnd(conn)).state, g.writeOut))(),
    );
  m.command("status").action(() =>
    run(async (conn, g) => renderMaintenance((await maintenanceStatus(conn)).state, g.writeOut))(),
  );
  program
    .command("schema")
    .description("schema")
    .command("history")
    .description("the replicated ledger of every DDL")
    .option("--after <index>", "only changes after this raft index", "0")
    .option("--limit <n>", "at most this many", "1000")
    .action((o: { after: string; limit: string }) =>
      run(async (conn, g) =>
        renderHistory(await schemaHistory(conn, BigInt(o.after), Number(o.limit)), g.writeOut),
      )(),
    );
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Runs flaredbctl with `argv` (as process.argv); returns the exit status. No argument: the shell. */
export async function runFlaredbctl(
  argv: readonly string[],
  io: Io = { out: (t) => process.stdout.write(`${t}\n`), err: (t) => process.stderr.write(`${t}\n`) },
): Promise<number> {
  const state = { exitCode: 0 };
  const program = buildProgram(io, state);
  const args = argv.slice(2);
  const hasCommand = args.some((a) => !a.startsWith("-") && program.commands.some((c) => c.name() === a));
  const wantsInfo = args.some((a) => ["-h", "--help", "-V", "--version"].includes(a));
  if (!hasCommand && !wantsInfo) args.push("shell");
  try {
    await program.parseAsync([...argv.slice(0, 2), ...args]);
    return state.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof CallError) io.err(`Error: ${err.message}${err.errorCode ? "" : ` (${err.endpoint})`}`);
    else if (err instanceof FlareDbError) io.err(`Error: ${err.code}: ${err.message}`);
    else io.err(`Error: ${(err as Error).message}`);
    return 1;
  }
}
