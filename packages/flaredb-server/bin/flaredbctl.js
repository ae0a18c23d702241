#!/usr/bin/env node
// Runs the compiled CLI (build first: `pnpm build`).
import { runFlaredbctl } from "../dist/bin/flaredbctl.js";

process.exitCode = await runFlaredbctl(process.argv);
