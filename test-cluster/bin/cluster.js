#!/usr/bin/env node
// `pnpm cluster ...` runs this: the compiled CLI (set-up compiles it; or run `pnpm build`).
import { existsSync } from "node:fs";

const entry = new URL("../dist/cli.js", import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write("cluster: test-cluster is not compiled: run `pnpm build` (or `pnpm setup`) first\n");
  process.exit(2);
}
const { main } = await import(entry.href);
await main();
