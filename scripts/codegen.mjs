#!/usr/bin/env node
// Generates TypeScript for @grpc/grpc-js from proto/ with buf + ts-proto. Each API package owns the
// generated code for the proto folders listed below, in its own src/gen/. `--check` regenerates into
// a temporary folder and fails if the committed code differs (run by the test command).
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/** proto folders (relative to proto/) → the package whose src/gen/ holds their generated code. */
export const targets = [
  { package: "packages/raft", protos: ["raft"] },
  { package: "packages/chainfire-api", protos: ["etcd", "chainfire"] },
  { package: "packages/flaredb-server", protos: ["flaredb"] },
  { package: "packages/iam-api", protos: ["iam"] },
];

const tsProtoOptions = [
  "outputServices=grpc-js",
  "forceLong=bigint",
  "esModuleInterop=true",
  "importSuffix=.js",
  "env=node",
  "useOptionals=none",
  "outputJsonMethods=false",
  "outputPartialMethods=false",
  "useExactTypes=false",
];

function generate(outRoot) {
  for (const target of targets) {
    const paths = target.protos.filter((p) => existsSync(join(root, "proto", p)));
    if (paths.length === 0 || !existsSync(join(root, target.package))) continue;
    const template = {
      version: "v2",
      plugins: [
        { local: "protoc-gen-ts_proto", out: join(outRoot, target.package, "src/gen"), opt: tsProtoOptions },
      ],
    };
    const args = ["exec", "buf", "generate", "--template", JSON.stringify(template)];
    for (const p of paths) args.push("--path", join("proto", p));
    execFileSync("pnpm", args, { cwd: root, stdio: "inherit" });
  }
}

function listFiles(dir) {
  if (!existsSync(dir)) return [];
  const out = [];
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) out.push(...listFiles(full).map((f) => join(name, f)));
    else out.push(name);
  }
  return out.sort();
}

if (process.argv.includes("--check")) {
  const tmp = mkdtempSync(join(tmpdir(), "photon-codegen-"));
  try {
    generate(tmp);
    const stale = [];
    for (const target of targets) {
      const want = join(tmp, target.package, "src/gen");
      const have = join(root, target.package, "src/gen");
      const files = new Set([...listFiles(want), ...listFiles(have)]);
      for (const f of files) {
        const a = existsSync(join(want, f)) ? readFileSync(join(want, f), "utf8") : null;
        const b = existsSync(join(have, f)) ? readFileSync(join(have, f), "utf8") : null;
        if (a !== b) stale.push(relative(root, join(have, f)));
      }
    }
    if (stale.length > 0) {
      console.error(`generated code is stale; run \`pnpm codegen\` and commit:\n  ${stale.join("\n  ")}`);
      process.exit(1);
    }
    console.log("codegen: generated code is current");
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
} else {
  for (const target of targets)
    rmSync(join(root, target.package, "src/gen"), { recursive: true, force: true });
  generate(root);
  console.log("codegen: done");
}
