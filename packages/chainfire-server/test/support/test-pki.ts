// The daemon kit's throwaway CA (`@photoncloud/daemon/testing`), with its certificates written as
// files in a test's directory, the way the daemons and chainfirectl take them (flags naming files).
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createTestCa } from "@photoncloud/daemon/testing";

export interface PemFiles {
  readonly cert: string;
  readonly key: string;
}

/** A CA written to `<dir>/<name>-ca.pem`; `issue` writes a leaf pair signed by it. */
export function testCa(dir: string, name: string) {
  const ca = createTestCa(`${name} CA`);
  const caFile = join(dir, `${name}-ca.pem`);
  writeFileSync(caFile, ca.cert);
  const issue = (leafName: string): PemFiles => {
    const leaf = ca.issue(leafName);
    const files = { cert: join(dir, `${leafName}.pem`), key: join(dir, `${leafName}-key.pem`) };
    writeFileSync(files.cert, leaf.cert);
    writeFileSync(files.key, leaf.key, { mode: 0o600 });
    return files;
  };
  return { caFile, issue };
}
