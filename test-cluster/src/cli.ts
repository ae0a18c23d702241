// `pnpm cluster up|down|status|<lane>`: the dev cluster and the proof lanes from one command.
import { Command, InvalidArgumentError, Option } from "commander";
import { down, status, up } from "./dev-cluster.js";
import { interruptLane, runLane, summaryTable } from "./lane.js";
import { lanes } from "./lanes/index.js";
import { cleanLeftovers, netnsPreflight } from "./netns.js";

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

export function buildProgram(): Command {
  const program = new Command("cluster")
    .description("PhotonCloud dev cluster and proof lanes (loopback, or one network namespace per member)")
    .showHelpAfterError();
  program
    .command("up")
    .description("start 3 chainfire + 3 flaredb + 1 iam (dev mode) under work/dev-cluster; Ctrl-C stops them")
    .option("--detach", "run the supervisor in the background and return once the cluster is up")
    .option("--fresh", "delete the dev cluster's data before starting")
    .option("--ephemeral-ports", "use free ports instead of the well-known 2379/2479/8543 layout")
    .option("--netns", "run each member in its own network namespace (root and iproute2 required)")
    .addOption(new Option("--chainfire <n>", "chainfire members").argParser(integer).default(3))
    .addOption(new Option("--flaredb <n>", "flaredb members").argParser(integer).default(3))
    .action(async (o) => {
      if (o.netns) netnsPreflight();
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
  program
    .command("netns-clean")
    .description("remove network namespaces, veths and bridges left by --netns runs that crashed (root)")
    .option("--force", "also remove the networks of runs that are still running")
    .action((o: { force?: boolean }) => {
      const report = cleanLeftovers({ force: o.force });
      for (const r of report.removed)
        out(
          `removed ${r.bridge ?? `run ${r.id} (no bridge)`}: ${r.namespaces.length} namespace(s)` +
            `${r.ownerPid === null ? "" : `, owner pid ${r.ownerPid} gone`}`,
        );
      for (const r of report.skipped)
        out(`kept pc${r.id}: its run (pid ${r.ownerPid}) is still running; --force removes it anyway`);
      for (const p of report.problems) out(`could not remove ${p}`);
      if (report.removed.length === 0 && report.skipped.length === 0) out("no --netns leftovers");
      process.exitCode = report.problems.length > 0 ? 1 : 0;
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
        if (o.netns) netnsPreflight();
        const onSignal = (signal: string) => {
          if (!interruptLane(signal)) process.exit(130);
        };
        process.on("SIGINT", onSignal);
        process.on("SIGTERM", onSignal);
        const result = await runLane(lane, { durationMs: o.duration, verbose: true, netns: o.netns });
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
