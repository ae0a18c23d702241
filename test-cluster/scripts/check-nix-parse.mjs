#!/usr/bin/env node
// CI check for the nix packaging: nix cannot fetch nixpkgs on the CI machine, so instead of building
// we make sure every tracked .nix file parses (`nix-instantiate --parse`, from Debian's nix-bin).
import { execFileSync, spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
if (spawnSync("nix-instantiate", ["--version"], { stdio: "ignore" }).status !== 0) {
  console.error(
    "check-nix-parse: nix-instantiate is not installed. Run the set-up as root on Debian (it installs nix-bin),\n" +
      "or install it yourself: apt-get install nix-bin",
  );
  process.exit(1);
}
const files = execFileSync("git", ["ls-files", "--cached", "--others", "--exclude-standard", "*.nix"], {
  cwd: root,
  encoding: "utf8",
})
  .split("\n")
  .filter(Boolean);
let failed = 0;
for (const file of files) {
  const res = spawnSync("nix-instantiate", ["--parse", file], { cwd: root, encoding: "utf8" });
  if (res.status === 0) console.log(`ok    ${file}`);
  else {
    failed++;
    console.log(`FAIL  ${file}\n${res.stderr}`);
  }
}
console.log(`${files.length - failed} of ${files.length} .nix files parse`);
process.exit(failed === 0 && files.length > 0 ? 0 : 1);
