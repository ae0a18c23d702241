#!/usr/bin/env node
// chainfirectl: the operator's command-line client for chainfire (etcdctl-style flags).
import { runCtl } from "../ctl/program.js";

const controller = new AbortController();
process.once("SIGINT", () => controller.abort());
process.once("SIGTERM", () => controller.abort());

function readStdin(): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    process.stdin.setEncoding("utf8");
    process.stdin.on("data", (chunk: string) => (text += chunk));
    process.stdin.on("end", () => resolve(text));
    process.stdin.on("error", reject);
  });
}

const code = await runCtl(process.argv.slice(2), {
  out: (text) => process.stdout.write(`${text}\n`),
  err: (text) => process.stderr.write(`${text}\n`),
  stderrIsTty: process.stderr.isTTY === true,
  signal: controller.signal,
  readStdin,
});
process.exitCode = code;
