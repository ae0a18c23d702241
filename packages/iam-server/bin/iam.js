#!/usr/bin/env -S node --max-semi-space-size=32
// Runs the compiled daemon (build first: `pnpm build`).
// --max-semi-space-size: each gRPC call allocates short-lived objects (HTTP/2 stream, call, metadata,
// messages); with many calls in flight a larger young generation lets them die before a scavenge
// copies them, which measurably cuts the daemon's garbage-collection time (see BENCHMARKS.md).
import { main } from "../dist/iam-daemon.js";

await main();
