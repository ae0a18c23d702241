#!/usr/bin/env node
// Runs the compiled CLI (build first: `pnpm build`).
import { runIamctl } from "../dist/iamctl.js";

process.exitCode = await runIamctl(process.argv);
