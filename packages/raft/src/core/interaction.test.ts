// Runs the testdata/*.txt interaction scripts: each command's trace must equal the recorded one.
// `UPDATE=1 pnpm exec vitest run packages/raft/src/core/interaction.test.ts` rewrites the expected
// traces; review the diff before committing it.
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { InteractionEnv, parseScript } from "../sim/interaction.js";

const testdata = join(dirname(fileURLToPath(import.meta.url)), "../../testdata");
const update = process.env["UPDATE"] === "1";

describe("interaction scripts", () => {
  for (const file of readdirSync(testdata)
    .filter((f) => f.endsWith(".txt"))
    .sort()) {
    it(file, () => {
      // Proves the core behaves exactly as the script's recorded trace says.
      const path = join(testdata, file);
      const text = readFileSync(path, "utf8");
      const env = new InteractionEnv();
      const blocks = parseScript(text);
      const actual = blocks.map((b) => ({ ...b, output: env.run(b.command) }));
      if (update) {
        writeFileSync(path, rewrite(text, actual));
        return;
      }
      for (const b of actual)
        expect(`${b.command}\n${b.output}`, `${file}:${b.line}`).toBe(`${b.command}\n${b.expected}`);
    });
  }
});

/** Replaces each block's expected output, keeping comments and commands in place. */
function rewrite(text: string, blocks: readonly { line: number; output: string }[]): string {
  const lines = text.split("\n");
  const out: string[] = [];
  let i = 0;
  for (const b of blocks) {
    while (i < b.line - 1) out.push(lines[i++] as string);
    out.push(lines[i++] as string, "----", b.output);
    i++; // the "----" line
    while (i < lines.length && (lines[i] as string).trim() !== "") i++;
  }
  while (i < lines.length) out.push(lines[i++] as string);
  return out.join("\n");
}
