// chainfirectl's command tree (commander). Every action resolves or throws; `runCtl` turns a throw
// into one clear line on stderr and a non-zero exit status, and never lets a stack trace reach the
// operator for an expected failure.
import { Command, CommanderError, Option } from "commander";
import { SnapshotFileError } from "../snapshot/snapshot-file.js";
import { endpointHealth, endpointStatus } from "./commands/endpoint.js";
import { del, get, parseBigint, put, rangeOf, type WatchFlags, watch } from "./commands/kv.js";
import {
  leaderTransfer,
  listMembers,
  memberAdd,
  memberPromote,
  memberRemove,
  memberUpdate,
  printMembers,
} from "./commands/member.js";
import { snapshotSave, snapshotStatusCommand } from "./commands/snapshot.js";
import { type WatchRequest, watchInteractive } from "./commands/watch-interactive.js";
import { type RestoreFlags, snapshotRestoreCommand } from "./commands/snapshot-restore.js";
import { Connection, type GlobalOptions } from "./connection.js";
import { badArgument, CtlError } from "./errors.js";
import { goQuote } from "../go-quote.js";
import type { CtlIo, OutputFormat } from "./format.js";

export const CTL_VERSION = "0.1.0";

type Action = (conn: Connection, format: OutputFormat, ...args: never[]) => Promise<void>;

/** etcdctl's environment variables for the global flags, read when the flag is not given. */
const ETCDCTL_ENV: Readonly<Record<string, string>> = {
  endpoints: "ETCDCTL_ENDPOINTS",
  writeOut: "ETCDCTL_WRITE_OUT",
  cacert: "ETCDCTL_CACERT",
  cert: "ETCDCTL_CERT",
  key: "ETCDCTL_KEY",
  dialTimeout: "ETCDCTL_DIAL_TIMEOUT",
  commandTimeout: "ETCDCTL_COMMAND_TIMEOUT",
  keepaliveTime: "ETCDCTL_KEEPALIVE_TIME",
  keepaliveTimeout: "ETCDCTL_KEEPALIVE_TIMEOUT",
  user: "ETCDCTL_USER",
  password: "ETCDCTL_PASSWORD",
};

/** etcdctl's boolean flags, whose variables hold "true" or "false". */
const ETCDCTL_BOOL_ENV: Readonly<Record<string, string>> = {
  hex: "ETCDCTL_HEX",
  insecureSkipTlsVerify: "ETCDCTL_INSECURE_SKIP_TLS_VERIFY",
  insecureTransport: "ETCDCTL_INSECURE_TRANSPORT",
};

/** The boolean global flags, which etcdctl also takes as `--flag=true` and `--flag=false`. */
const BOOL_FLAGS: readonly string[] = ["hex", "insecure-skip-tls-verify", "insecure-transport"];

/** Go's strconv.ParseBool, which etcdctl's flags and variables use. */
function parseBool(text: string): boolean | undefined {
  if (["1", "t", "T", "TRUE", "true", "True"].includes(text)) return true;
  if (["0", "f", "F", "FALSE", "false", "False"].includes(text)) return false;
  return undefined;
}

/**
 * `--flag=true` → `--flag`, `--flag=false` → `--no-flag`, for etcdctl's boolean flags (`boolFlags`,
 * each with a `--no-` form; see `boolFlagsOf`); arguments after `--` are left alone.
 */
export function normaliseBoolFlags(
  argv: readonly string[],
  boolFlags: readonly string[] = BOOL_FLAGS,
): string[] {
  const end = argv.indexOf("--");
  const flags = end < 0 ? argv : argv.slice(0, end);
  const normalised = flags.map((arg) => {
    const match = /^--([a-z-]+)=(.*)$/.exec(arg);
    if (!match || !boolFlags.includes(match[1]!)) return arg;
    const value = parseBool(match[2]!);
    if (value === undefined) throw badArgument(`--${match[1]}: "${match[2]}" is not true or false`);
    return value ? `--${match[1]}` : `--no-${match[1]}`;
  });
  return end < 0 ? normalised : [...normalised, ...argv.slice(end)];
}

/** The boolean flags of every command that have a `--no-` form, which `--flag=false` turns into. */
function boolFlagsOf(program: Command): string[] {
  const names = new Set<string>();
  const visit = (command: Command) => {
    const longs = new Set(command.options.map((o) => o.long));
    for (const o of command.options) {
      if (o.negate || o.required || o.optional || o.long === undefined) continue;
      if (longs.has(`--no-${o.long.slice(2)}`)) names.add(o.long.slice(2));
    }
    for (const sub of command.commands) visit(sub);
  };
  visit(program);
  return [...names];
}

/**
 * etcdctl's `watch <key> [range_end] -- <command> [args...]`: after the `watch` command word, the
 * words that follow the first `--` are a command to run for each event, not operands. Returns the
 * arguments for commander and that command (none for any other command, or without `--`).
 */
export function splitWatchCommand(
  program: Command,
  argv: readonly string[],
): { argv: string[]; exec?: string[] } {
  const takesValue = new Set<string>();
  for (const o of program.options) {
    if (!o.required && !o.optional) continue;
    if (o.long !== undefined) takesValue.add(o.long);
    if (o.short !== undefined) takesValue.add(o.short);
  }
  // The command word: the first argument that is neither a global flag nor a global flag's value.
  let at = 0;
  while (at < argv.length && argv[at] !== "--" && argv[at]!.startsWith("-")) {
    at += takesValue.has(argv[at]!) ? 2 : 1;
  }
  if (argv[at] !== "watch") return { argv: [...argv] };
  const separator = argv.indexOf("--", at + 1);
  if (separator < 0) return { argv: [...argv] };
  const exec = argv.slice(separator + 1);
  if (exec.length === 0) {
    throw badArgument(
      "watch: nothing follows the separator --; give the command to run for each event after it",
    );
  }
  return { argv: argv.slice(0, separator), exec };
}

/** The global options, with etcdctl's variables below the flags and CHAINFIRECTL_ENDPOINTS. */
function globalsOf(command: Command): GlobalOptions {
  let root = command;
  while (root.parent !== null) root = root.parent;
  const globals = { ...(command.optsWithGlobals() as GlobalOptions) } as GlobalOptions &
    Record<string, unknown>;
  for (const [option, variable] of Object.entries({ ...ETCDCTL_ENV, ...ETCDCTL_BOOL_ENV })) {
    const source = root.getOptionValueSource(option);
    const value = process.env[variable];
    if (source === "cli" || source === "env" || value === undefined || value === "") continue;
    if (!(option in ETCDCTL_BOOL_ENV)) {
      globals[option] = value;
      continue;
    }
    const parsed = parseBool(value);
    if (parsed === undefined) throw badArgument(`${variable}: "${value}" is not true or false`);
    globals[option] = parsed;
  }
  if (!["simple", "table", "json"].includes(globals.writeOut)) {
    throw badArgument(`ETCDCTL_WRITE_OUT: "${globals.writeOut}" is not simple, table or json`);
  }
  return globals;
}

/** Wraps an action: opens the connection from the global flags and always closes it. */
function withConnection(action: Action) {
  return async (...args: unknown[]) => {
    const command = args[args.length - 1] as Command;
    const globals = globalsOf(command);
    const conn = new Connection(globals);
    try {
      await (action as (...a: unknown[]) => Promise<void>)(conn, globals.writeOut, ...args.slice(0, -1));
    } finally {
      conn.close();
    }
  };
}

/** A boolean command flag, with a hidden `--no-` form so that pflag's `--flag=false` turns it off. */
function boolOption(command: Command, name: string, description: string): Command {
  return command.option(`--${name}`, description).addOption(new Option(`--no-${name}`).hideHelp());
}

function globalOptions(program: Command): void {
  program
    .addOption(
      new Option(
        "--endpoints <list>",
        "comma-separated gRPC endpoints, the first that connects used (also ETCDCTL_ENDPOINTS; every global flag reads its ETCDCTL_ variable)",
      )
        .default("127.0.0.1:2379")
        .env("CHAINFIRECTL_ENDPOINTS"),
    )
    .addOption(
      new Option("-w, --write-out <format>", "output format")
        .choices(["simple", "table", "json"])
        .default("simple"),
    )
    .option("--cacert <file>", "verify servers with this CA bundle (enables TLS)")
    .option("--cert <file>", "client certificate for mTLS (with --key)")
    .option("--key <file>", "client private key for mTLS (with --cert)")
    .option("--dial-timeout <duration>", "connection timeout", "2s")
    .option("--command-timeout <duration>", "per-request timeout", "5s")
    .option(
      "--keepalive-time <duration>",
      "keepalive ping interval of client connections (at least 10s)",
      "2s",
    )
    .option("--keepalive-timeout <duration>", "how long a keepalive ping waits for its answer", "6s")
    .option("--hex", "print keys and values as \\x.. bytes")
    .addOption(new Option("--no-hex").hideHelp())
    .option("--insecure-skip-tls-verify", "use TLS without checking the server's certificate (testing only)")
    .addOption(new Option("--no-insecure-skip-tls-verify").hideHelp())
    .option("--insecure-transport", "plain connections unless --cacert/--cert or https:// (default)")
    .option("--no-insecure-transport", "TLS even without --cacert, verified against the system's CAs")
    .option(
      "--user <name[:password]>",
      "user for authentication (chainfire has none: accepted, and the server says it is off)",
    )
    .option("--password <password>", "password for --user (then --user is the name as written)");
}

function memberCommands(program: Command, io: CtlIo): void {
  const member = program.command("member").description("membership (chainfire.v1.Cluster)");
  member
    .command("list")
    .description("list members")
    .action(withConnection(async (conn, format) => printMembers(io, format, await listMembers(conn))));
  boolOption(
    member
      .command("add <name>")
      .description("add a member, or update one that has this ID/name (upsert)")
      .option("--peer-urls <urls>", "comma-separated peer URLs")
      .option("--client-urls <urls>", "comma-separated client URLs"),
    "learner",
    "add as a learner (non-voting)",
  )
    .option("--id <hex>", "explicit member ID (default: derived from the name and cluster token)")
    .action(
      withConnection((conn, format, name: string, opts: object) => memberAdd(conn, io, format, name, opts)),
    );
  member
    .command("remove <id>")
    .description("remove a member (any, including the leader)")
    .action(withConnection((conn, format, id: string) => memberRemove(conn, io, format, id)));
  member
    .command("promote <id>")
    .description("promote a learner to voter")
    .action(withConnection((conn, format, id: string) => memberPromote(conn, io, format, id)));
  member
    .command("update <id>")
    .description("replace a member's URLs in place")
    .option("--peer-urls <urls>", "comma-separated peer URLs")
    .option("--client-urls <urls>", "comma-separated client URLs")
    .action(
      withConnection((conn, format, id: string, opts: object) => memberUpdate(conn, io, format, id, opts)),
    );
  const leader = program.command("leader").description("leadership");
  leader
    .command("transfer <target>")
    .description("hand leadership to a voter, by name or hex ID")
    .action(withConnection((conn, format, target: string) => leaderTransfer(conn, io, format, target)));
}

function endpointCommands(program: Command, io: CtlIo): void {
  const endpoint = program.command("endpoint").description("per-endpoint status and health");
  boolOption(endpoint.command("status"), "cluster", "ask every member listed by `member list`").action(
    withConnection((conn, format, opts: { cluster?: boolean }) =>
      endpointStatus(conn, io, format, opts.cluster === true),
    ),
  );
  boolOption(endpoint.command("health"), "cluster", "ask every member listed by `member list`").action(
    withConnection((conn, format, opts: { cluster?: boolean }) =>
      endpointHealth(conn, io, format, opts.cluster === true),
    ),
  );
}

function rangeOptions(command: Command): Command {
  boolOption(command, "prefix", "treat the key as a prefix");
  return boolOption(command, "from-key", "every key >= the key");
}

/** Set by `runCtl` before parsing: the command `watch <key> -- <command>...` runs for each event. */
interface CtlContext {
  watchExec?: string[];
}

function kvCommands(program: Command, io: CtlIo, context: CtlContext): void {
  const putCommand = program
    .command("put <key> [value]")
    .description("put a key (value from stdin when omitted)")
    .option("--lease <hex>", "attach to this lease");
  boolOption(putCommand, "prev-kv", "print the previous key-value");
  boolOption(putCommand, "ignore-value", "keep the current value");
  boolOption(putCommand, "ignore-lease", "keep the current lease").action(
    withConnection((conn, format, key: string, value: string | undefined, opts: object) =>
      put(conn, io, format, key, value, opts),
    ),
  );
  const getCommand = rangeOptions(program.command("get <key> [range_end]").description("get keys"))
    .option("--rev <revision>", "read at this revision")
    .option("--limit <n>", "at most n keys")
    .option("--sort-by <target>", "KEY, VERSION, CREATE, MODIFY or VALUE")
    .option("--order <order>", "ASCEND or DESCEND")
    .option("--consistency <l|s>", "l = linearizable, s = serializable", "l");
  boolOption(getCommand, "keys-only", "keys without values");
  boolOption(getCommand, "count-only", "only the number of keys");
  boolOption(getCommand, "print-value-only", "values without keys").action(
    withConnection((conn, format, key: string, end: string | undefined, opts: object) =>
      get(conn, io, format, key, end, opts),
    ),
  );
  boolOption(
    rangeOptions(program.command("del <key> [range_end]").description("delete keys")),
    "prev-kv",
    "print the deleted key-values",
  ).action(
    withConnection((conn, format, key: string, end: string | undefined, opts: object) =>
      del(conn, io, format, key, end, opts),
    ),
  );
  const watchCommand = watchOptions(
    program
      .command("watch [key] [range_end]")
      .description(
        "print events until interrupted; `-- <command> [args...]` runs a command for each event; " +
          "the key (and range end) may come from ETCDCTL_WATCH_KEY (and ETCDCTL_WATCH_RANGE_END)",
      ),
  );
  watchCommand
    .option("-i, --interactive", "read watch requests from standard input, one per line (and `progress`)")
    .addOption(new Option("--no-interactive").hideHelp())
    .action(
      withConnection((conn, format, key: string | undefined, end: string | undefined, opts: object) => {
        if ((opts as { interactive?: boolean }).interactive === true) {
          // The variables are checked before any request is read, as etcdctl checks them.
          watchEnvRange(process.env);
          return watchInteractive(conn, io, format, (words) => parseWatchRequest(words, process.env));
        }
        const range = watchRange(key, end, process.env);
        return watch(conn, io, format, range.key, range.end, {
          ...opts,
          ...(context.watchExec === undefined ? {} : { exec: context.watchExec }),
        });
      }),
    );
}

/** The flags of a watch, on the command line and on a `watch -i` request line alike. */
function watchOptions(command: Command): Command {
  rangeOptions(command).option("--rev <revision>", "start at this revision (history catch-up)");
  return boolOption(command, "prev-kv", "print the previous key-value with each event");
}

/**
 * One `watch -i` request line after its `watch` word: the flags and arguments the watch command
 * takes, then an optional `-- <command> [args...]` to run for each event.
 */
export function parseWatchRequest(words: readonly string[], env: NodeJS.ProcessEnv): WatchRequest {
  const separator = words.indexOf("--");
  const exec = separator < 0 ? undefined : words.slice(separator + 1);
  if (exec !== undefined && exec.length === 0) {
    throw badArgument("bad number of arguments (found separator --, but no commands)");
  }
  const line = watchOptions(new Command("watch").argument("[key]").argument("[range_end]"))
    .allowExcessArguments(false)
    .exitOverride()
    .configureOutput({ writeOut: () => {}, writeErr: () => {} });
  line.parse(normaliseBoolFlags(separator < 0 ? words : words.slice(0, separator), boolFlagsOf(line)), {
    from: "user",
  });
  const [key, end] = line.args as [string | undefined, string | undefined];
  const range = watchRange(key, end, env);
  const flags: WatchFlags = { ...line.opts(), ...(exec === undefined ? {} : { exec }) };
  // What the watch itself would refuse, refused here: the line is said to be bad, nothing more.
  rangeOf(range.key, range.end, flags);
  parseBigint(flags.rev, "--rev");
  return { ...range, flags };
}

/**
 * The watched key and range end: from the arguments, or from etcdctl's ETCDCTL_WATCH_KEY and
 * ETCDCTL_WATCH_RANGE_END, which may not be combined with a key argument (etcdctl's refusals).
 */
export function watchRange(
  key: string | undefined,
  end: string | undefined,
  env: NodeJS.ProcessEnv,
): { key: string; end: string | undefined } {
  const { key: envKey, end: envEnd } = watchEnvRange(env);
  if (envKey === "") {
    if (key === undefined) throw badArgument("bad number of arguments");
    return { key, end };
  }
  if (key !== undefined) throw badArgument("bad number of arguments (found conflicting environment key)");
  return { key: envKey, end: envEnd === "" ? undefined : envEnd };
}

/** ETCDCTL_WATCH_KEY and ETCDCTL_WATCH_RANGE_END ("" when unset); a range end alone is refused. */
function watchEnvRange(env: NodeJS.ProcessEnv): { key: string; end: string } {
  const key = env.ETCDCTL_WATCH_KEY ?? "";
  const end = env.ETCDCTL_WATCH_RANGE_END ?? "";
  if (key === "" && end !== "") {
    throw badArgument(
      `ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END=${goQuote(Buffer.from(end))}`,
    );
  }
  return { key, end };
}

function snapshotCommands(program: Command, io: CtlIo): void {
  const snapshot = program.command("snapshot").description("backup and restore");
  snapshot
    .command("save <file>")
    .description("stream a snapshot from one member into a file")
    .action(withConnection((conn, _format, file: string) => snapshotSave(conn, io, file)));
  snapshot
    .command("status <file>")
    .description("hash, revision, total keys and size of a snapshot file")
    .action((file: string, _opts: object, command: Command) =>
      snapshotStatusCommand(io, globalsOf(command).writeOut, file),
    );
  const restore = snapshot
    .command("restore <file>")
    .description("offline: write a fresh data dir for one member of a NEW cluster from a snapshot file")
    // etcdctl 3.4's defaults: a one-member cluster named "default" on http://localhost:2380.
    .option("--name <name>", "this member's name (in --initial-cluster)", "default")
    .option("--data-dir <dir>", "data directory to create (must not exist or be empty; default: <name>.etcd)")
    .option("--initial-cluster <list>", "name=peerURL,... of the new cluster (default: <name>=<peer URLs>)")
    .option("--initial-advertise-peer-urls <urls>", "this member's peer URLs", "http://localhost:2380")
    .option(
      "--initial-cluster-token <token>",
      "token of the new cluster (gives it a new identity)",
      "photoncloud-cluster",
    );
  boolOption(restore, "skip-hash-check", "accept a database copy without the trailing sha256");
  boolOption(
    restore,
    "drop-etcd-auth",
    "restore an etcd snapshot whose authentication is enabled, without its users and roles (chainfire has no etcd auth)",
  ).action(
    (
      file: string,
      opts: { name: string; dataDir?: string; initialCluster?: string; initialAdvertisePeerUrls: string },
    ) =>
      snapshotRestoreCommand(io, file, {
        ...(opts as never as RestoreFlags),
        dataDir: opts.dataDir ?? `${opts.name}.etcd`,
        initialCluster:
          opts.initialCluster ??
          opts.initialAdvertisePeerUrls
            .split(",")
            .map((u) => `${opts.name}=${u.trim()}`)
            .join(","),
      }),
  );
}

export function buildProgram(io: CtlIo, context: CtlContext = {}): Command {
  const program = new Command("chainfirectl")
    .description("command-line client for chainfire (etcdctl-compatible flags)")
    .version(CTL_VERSION)
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.out(s.replace(/\n$/, "")),
      writeErr: (s) => io.err(s.replace(/\n$/, "")),
    });
  globalOptions(program);
  memberCommands(program, io);
  endpointCommands(program, io);
  kvCommands(program, io, context);
  snapshotCommands(program, io);
  return program;
}

/**
 * etcdctl's exit statuses (ExitBadFeature, ExitInterrupted, ExitBadArgs); others are 1. An endpoint
 * that cannot be reached is 1 too: etcdctl 3.4's client dials without blocking, so its request fails
 * at the deadline (ExitError), and its ExitBadConnection (2) is never seen for a down member.
 */
const EXIT_CODES: Partial<Record<CtlError["code"], number>> = {
  INVALID_INPUT: 3,
  BAD_FEATURE: 4,
  WATCH_CANCELED: 5,
  BAD_ARGUMENT: 128,
};

/** Runs one invocation; returns the process exit status. */
export async function runCtl(argv: readonly string[], io: CtlIo): Promise<number> {
  const context: CtlContext = {};
  const program = buildProgram(io, context);
  try {
    const split = splitWatchCommand(program, argv);
    if (split.exec !== undefined) context.watchExec = split.exec;
    await program.parseAsync(normaliseBoolFlags(split.argv, boolFlagsOf(program)), { from: "user" });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // etcdctl's commands check their own arguments and exit with ExitBadArgs (128).
      const badArgs = err.code === "commander.missingArgument" || err.code === "commander.excessArguments";
      return badArgs ? EXIT_CODES.BAD_ARGUMENT! : err.exitCode;
    }
    if (err instanceof CtlError && err.code === "REPORTED") return 1;
    if (err instanceof CtlError || err instanceof SnapshotFileError) {
      io.err(`Error: ${err.message}`);
      return err instanceof CtlError ? (EXIT_CODES[err.code] ?? 1) : 1;
    }
    io.err(`Error: ${(err as Error).message ?? String(err)}`);
    return 1;
  }
}
