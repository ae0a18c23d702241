#!/usr/bin/env node
// Runs the compiled daemon (build first: `pnpm build`).
import { main } from "../dist/iam-daemon.js";

await main();
