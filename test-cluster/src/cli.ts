// `pnpm cluster up|down|status|<lane>`: the dev cluster and the proof lanes from one command.
import { Command, InvalidArgumentError, Option } from "commander";
import { down, status, up } from "./dev-cluster.js";
import { interruptLane, runLane, summaryTable } from "./lane.js";
import { lanes } from "./lanes/index.js";

const out = (line: string) => process.stdout.write(`${line}\n`);

/** "90", "90s", "5m", "1h" → milliseconds. */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (m === null) throw new InvalidArgumentError(`"${text}" is not a duration: use e.g. 90s, 5m or 1h`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? "s") as "ms" | "s" | "m" | "h"];
  return Math.round(Number(m[1]) * unit);
}

function integer(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 7)
    throw new InvalidArgumentError(`"${text}" must be an integer from 0 to 7`);
  return n;
}

/**
 * Separate network namespaces would need a bridge with non-loopback addresses; this project keeps
 * all of its test traffic on 127.0.0.0/8, so the option is refused with the reason.
 */
function netnsUnsupported(): never {
  throw new Error(
    "--netns is not supported: every member runs on 127.0.0.1 in the host network namespace, because test " +
      "traffic is kept on loopback (namespaces would need a bridge with non-loopback addresses). Run the lane " +
      "without --netns",
  );
}

export function buildProgram(): Command {
  const program = new Command("cluster")
    .description("PhotonCloud dev cluster and proof lanes (loopback only)")
    .showHelpAfterError();
  program
    .command("up")
    .description("start 3 chainfire + 3 flaredb + 1 iam (dev mode) under work/dev-cluster; Ctrl-C stops them")
    .option("--detach", "run the supervisor in the background and return once the cluster is up")
    .option("--fresh", "delete the dev cluster's data before starting")
    .option("--ephemeral-ports", "use free ports instead of the well-known 2379/2479/8543 layout")
    .addOption(new Option("--chainfire <n>", "chainfire members").argParser(integer).default(3))
    .addOption(new Option("--flaredb <n>", "flaredb members").argParser(integer).default(3))
    .action(async (o) => {
      process.exitCode = await up(o, out);
    });
  program
    .command("down")
    .description("stop the dev cluster started by `up` (foreground or detached)")
    .action(async () => {
      process.exitCode = await down(out);
    });
  program
    .command("status")
    .description("members, leaders, terms and health of the dev cluster")
    .addOption(
      new Option("-w, --write-out <format>", "output format").choices(["table", "json"]).default("table"),
    )
    .action(async (o) => {
      process.exitCode = await status(o.writeOut, out);
    });
  for (const lane of lanes) {
    program
      .command(lane.name)
      .description(`proof lane: ${lane.description}; artifacts under work/${lane.name}/<UTC timestamp>/`)
      .addOption(
        new Option(
          "--duration <time>",
          "rollout-soak: how long to soak (e.g. 90s, 5m; at most 1h)",
        ).argParser(parseDuration),
      )
      .option("--netns", "run each member in its own network namespace (root and iproute2 required)")
      .action(async (o: { duration?: number; netns?: boolean }) => {
        if (o.netns) netnsUnsupported();
        const onSignal = (signal: string) => {
          if (!interruptLane(signal)) process.exit(130);
        };
        process.on("SIGINT", onSignal);
        process.on("SIGTERM", onSignal);
        const result = await runLane(lane, { durationMs: o.duration, verbose: true });
        out(summaryTable(result));
        process.exitCode = result.ok ? 0 : 1;
      });
  }
  return program;
}

export async function main(argv = process.argv): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    process.stderr.write(`cluster: ${(err as Error).message}\n`);
    process.exitCode = 2;
  }
}
