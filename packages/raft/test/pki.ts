// The TLS tests' PKI is the daemon kit's (`@photoncloud/daemon/testing`); this writes its PEMs into a
// test's own directory, which the test removes with the rest of its data.
import { writeFileSync } from "node:fs";
import { join } from "node:path";

/** Writes `files` (name → PEM text) into `dir` with owner-only permissions; returns their paths. */
export function writePems(dir: string, files: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, text] of Object.entries(files)) {
    out[name] = join(dir, name);
    writeFileSync(out[name], text, { mode: 0o600 });
  }
  return out;
}
