#!/usr/bin/env node
// chainfirectl: the operator's command-line client for chainfire (etcdctl-style flags).
import { createInterface } from "node:readline";
import { runCtl } from "../ctl/program.js";

const controller = new AbortController();
// Ctrl-C (or a TERM) ends any command at once, as it ends etcdctl: the shell sees 130 (143). The
// progress bar's hidden cursor is shown again first.
for (const [signal, code] of [
  ["SIGINT", 130],
  ["SIGTERM", 143],
] as const) {
  process.once(signal, () => {
    controller.abort();
    if (process.stderr.isTTY) process.stderr.write("\x1b[?25h");
    process.exit(code);
  });
}

function readStdin(): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    process.stdin.on("data", (chunk: Buffer) => chunks.push(chunk));
    process.stdin.on("end", () => resolve(Buffer.concat(chunks)));
    process.stdin.on("error", reject);
  });
}

const code = await runCtl(process.argv.slice(2), {
  out: (text) => process.stdout.write(`${text}\n`),
  outBytes: (bytes) => process.stdout.write(Buffer.concat([bytes, Buffer.from("\n")])),
  err: (text) => process.stderr.write(`${text}\n`),
  stderrIsTty: process.stderr.isTTY === true,
  signal: controller.signal,
  readStdin,
  readLines: () => createInterface({ input: process.stdin, crlfDelay: Number.POSITIVE_INFINITY }),
});
process.exitCode = code;
