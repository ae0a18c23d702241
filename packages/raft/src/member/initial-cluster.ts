// --initial-cluster parsing: `name=url[,name=url...]`, etcd's format. A name may repeat to give a
// member several peer URLs. Each member's ID is derived from the cluster token and its name.
import { ConfigErrorCode, configError, parseUrl } from "@photoncloud/daemon";
import type { MemberInfo } from "../service/members.js";
import { deriveMemberId } from "./ids.js";

const EXAMPLE = "n1=http://127.0.0.1:2380,n2=http://127.0.0.2:2380,n3=http://127.0.0.3:2380";

/** Throws the daemon kit's ConfigError (the daemon exits 2 with this one line). */
function fail(problem: string): never {
  throw configError(
    ConfigErrorCode.InvalidValue,
    "--initial-cluster",
    `--initial-cluster: ${problem} (expected name=url[,name=url...], e.g. --initial-cluster ${EXAMPLE})`,
  );
}

/** Members in order of first appearance; ids derived with `deriveMemberId(token, name)`. */
export function parseInitialCluster(text: string, token: string): MemberInfo[] {
  const parts = text
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p !== "");
  if (parts.length === 0) fail("is empty");
  const byName = new Map<string, string[]>();
  const seenUrls = new Set<string>();
  for (const part of parts) {
    const eq = part.indexOf("=");
    if (eq <= 0) fail(`"${part}" has no name (write it as name=url)`);
    const name = part.slice(0, eq).trim();
    const urlText = part.slice(eq + 1).trim();
    let href: string;
    try {
      href = parseUrl(urlText).href;
    } catch (err) {
      fail(`member "${name}": ${(err as Error).message}`);
    }
    if (seenUrls.has(href)) fail(`peer URL ${href} is listed twice`);
    seenUrls.add(href);
    const urls = byName.get(name) ?? [];
    urls.push(href);
    byName.set(name, urls);
  }
  return [...byName].map(([name, peerUrls]) => ({
    id: deriveMemberId(token, name),
    name,
    peerUrls,
    clientUrls: [],
    isLearner: false,
  }));
}
