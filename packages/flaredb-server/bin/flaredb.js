#!/usr/bin/env node
// Runs the compiled daemon (build first: `pnpm build`).
import { main } from "../dist/bin/flaredb.js";

await main();
