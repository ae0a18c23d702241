// core-control-plane-ops-proof: the boundary of the operator contract. It records what chainfire
// publishes (services and methods, by reflection on a live member), checks the operator doc carries
// every contract marker and lane command, observes iam's bootstrap hardening, runs the three rotation
// test files, and writes the scope-fixed contract. Steps are independent: each leaves its evidence
// even when another fails.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { grpcTarget } from "../clients.js";
import { Cluster, laneTiming } from "../cluster.js";
import { requiredDocPhrases, scopeItems, scopeMarker } from "../contract.js";
import { requireDaemon } from "../daemons.js";
import type { LaneContext, LaneDefinition } from "../lane.js";
import { repoRoot } from "../paths.js";
import { reflectSurface } from "../reflection.js";
import { bootstrapSourceMarkers, observeBootstrapHardening } from "./iam-bootstrap.js";

export const operatorDoc = "docs/control-plane-ops.md";

/** The published operator API chainfire must expose (the seed's list plus the etcd services). */
const expectedSurface: Record<string, string[]> = {
  "chainfire.v1.Cluster": ["MemberAdd", "MemberRemove", "MemberList", "Status", "LeaderTransfer"],
  "etcdserverpb.KV": ["Range", "Put", "DeleteRange", "Txn", "Compact"],
  "etcdserverpb.Cluster": ["MemberAdd", "MemberRemove", "MemberUpdate", "MemberList", "MemberPromote"],
  "etcdserverpb.Maintenance": ["Status", "Snapshot", "MoveLeader"],
  "etcdserverpb.Watch": ["Watch"],
  "etcdserverpb.Lease": ["LeaseGrant", "LeaseRevoke", "LeaseKeepAlive", "LeaseTimeToLive"],
};

export const rotationTests = [
  "packages/iam-authn/test/signing-key-rotation.test.ts",
  "packages/iam-authn/test/mtls-rotation.test.ts",
  "packages/iam-api/test/credential-rotation.test.ts",
];

async function chainfireSurface(ctx: LaneContext) {
  requireDaemon("chainfire");
  const cluster = await Cluster.create({
    dir: join(ctx.runDir, "chainfire"),
    chainfire: 1,
    flaredb: 0,
    iam: false,
    ports: "ephemeral",
    timing: laneTiming,
    ...(ctx.network === undefined ? {} : { netns: ctx.network, netnsLabel: "surface" }),
  });
  ctx.onCleanup("chainfire member", () => cluster.stop());
  await cluster.start(60_000);
  const [member] = cluster.ofKind("chainfire");
  const services = await reflectSurface(grpcTarget(member!.desc.clientUrl));
  await cluster.stop();
  const missing: string[] = [];
  for (const [service, methods] of Object.entries(expectedSurface)) {
    const found = services.find((s) => s.service === service);
    for (const m of methods) if (!found?.methods.some((x) => x.name === m)) missing.push(`${service}/${m}`);
  }
  if (missing.length > 0) {
    throw Object.assign(new Error(`chainfire does not publish: ${missing.join(", ")}`), {
      details: services,
    });
  }
  return { endpoint: member!.desc.clientUrl, services };
}

export function docMarkers(docPath = join(repoRoot(), operatorDoc)) {
  if (!existsSync(docPath)) throw new Error(`${operatorDoc} does not exist`);
  const lines = readFileSync(docPath, "utf8").split("\n");
  const where = (needle: string) => {
    const i = lines.findIndex((l) => l.includes(needle));
    return i < 0 ? null : i + 1;
  };
  const markers = scopeItems.map((item) => ({
    id: item.id,
    status: item.status,
    line: where(scopeMarker(item.id)),
  }));
  const phrases = requiredDocPhrases().map((phrase) => ({ phrase, line: where(phrase) }));
  const missing = [
    ...markers.filter((m) => m.line === null).map((m) => scopeMarker(m.id)),
    ...phrases.filter((p) => p.line === null).map((p) => p.phrase),
  ];
  if (missing.length > 0) {
    throw Object.assign(new Error(`${operatorDoc} lacks: ${missing.join(", ")}`), {
      details: { markers, phrases },
    });
  }
  return { doc: operatorDoc, markers, phrases };
}

interface VitestReport {
  numPassedTests: number;
  numFailedTests: number;
  numTotalTests: number;
  testResults: {
    name: string;
    status: string;
    assertionResults: { fullName: string; status: string; duration?: number }[];
  }[];
}

function rotationTestRun(ctx: LaneContext) {
  const logs = join(ctx.runDir, "logs");
  mkdirSync(logs, { recursive: true });
  const report = join(ctx.runDir, "iam-rotation-vitest-report.json");
  const res = spawnSync(
    "pnpm",
    [
      "exec",
      "vitest",
      "run",
      ...rotationTests,
      "--reporter=default",
      "--reporter=json",
      `--outputFile.json=${report}`,
    ],
    { cwd: repoRoot(), encoding: "utf8", env: { ...process.env, CI: "1" }, timeout: 300_000 },
  );
  require_(
    existsSync(report),
    `vitest wrote no report (exit ${res.status}): ${(res.stderr ?? "").slice(-1500)}`,
  );
  const parsed = JSON.parse(readFileSync(report, "utf8")) as VitestReport;
  const files = rotationTests.map((file) => {
    const r = parsed.testResults.find((t) => t.name.endsWith(file));
    return {
      file,
      status: r?.status ?? "not run",
      tests: (r?.assertionResults ?? []).map((a) => ({
        name: a.fullName,
        status: a.status,
        ms: Math.round(a.duration ?? 0),
      })),
    };
  });
  const summary = {
    exitCode: res.status,
    passed: parsed.numPassedTests,
    failed: parsed.numFailedTests,
    files,
  };
  const bad = files.filter((f) => f.status !== "passed" || f.tests.length === 0);
  if (res.status !== 0 || bad.length > 0) {
    throw Object.assign(
      new Error(
        `rotation tests failed: ${bad.map((f) => `${f.file} (${f.status})`).join(", ") || `exit ${res.status}`}`,
      ),
      { details: summary },
    );
  }
  return summary;
}

function require_(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(message);
}

function scopeContract() {
  const pick = (status: string) =>
    scopeItems
      .filter((i) => i.status === status)
      .map(({ id, area, summary, proof }) => ({ id, area, summary, proof, docMarker: scopeMarker(id) }));
  return { doc: operatorDoc, supported: pick("supported"), outOfScope: pick("out-of-scope") };
}

export const coreControlPlaneOpsProof: LaneDefinition = {
  name: "core-control-plane-ops-proof",
  description:
    "chainfire API surface, operator-doc markers, iam bootstrap hardening and rotation tests, scope contract",
  async run(ctx) {
    await ctx.check("chainfire-api-surface", () => chainfireSurface(ctx));
    await ctx.check("operator-doc-markers", () => docMarkers());
    await ctx.check("iam-bootstrap-source-markers", () => bootstrapSourceMarkers());
    await ctx.check("iam-bootstrap-hardening", () => observeBootstrapHardening(ctx.runDir, ctx.network));
    await ctx.check("iam-rotation-tests", () => rotationTestRun(ctx));
    await ctx.check("scope-fixed-contract", () => scopeContract());
  },
};
