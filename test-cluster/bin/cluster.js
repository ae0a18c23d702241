#!/usr/bin/env node
// `pnpm cluster ...` runs this. On a fresh checkout (nothing compiled yet) it runs the repository's
// set-up first; afterwards it starts at once (`pnpm build` recompiles after changes).
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";

const entry = new URL("../dist/cli.js", import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write("cluster: not compiled yet; running the set-up (scripts/setup.mjs) first\n");
  const setup = new URL("../../scripts/setup.mjs", import.meta.url);
  const res = spawnSync(process.execPath, [setup.pathname], { stdio: "inherit" });
  if (res.status !== 0 || !existsSync(entry)) process.exit(res.status || 2);
}
const { main } = await import(entry.href);
await main();
