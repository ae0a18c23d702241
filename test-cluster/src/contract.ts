// The scope-fixed operator contract: what the core control plane supports and what it leaves out,
// each item tied to the proof that backs it and to the marker `<!-- scope:<id> -->` that
// docs/control-plane-ops.md must carry beside the paragraph describing it. The ops proof checks the
// doc against this list and writes it out as scope-fixed-contract.json, so the doc, the code and the
// artifact cannot drift apart silently.

export type ScopeArea = "chainfire" | "flaredb" | "iam";
export type ScopeStatus = "supported" | "out-of-scope";

export interface ScopeItem {
  readonly id: string;
  readonly area: ScopeArea;
  readonly status: ScopeStatus;
  readonly summary: string;
  /** Lanes or test files that demonstrate it (empty for out-of-scope items). */
  readonly proof: readonly string[];
}

const membershipLane = "chainfire-live-membership-proof";

export const scopeItems: readonly ScopeItem[] = [
  {
    id: "chainfire.member-add",
    area: "chainfire",
    status: "supported",
    summary: "scale out by adding a learner or a voter with MemberAdd",
    proof: [membershipLane],
  },
  {
    id: "chainfire.learner-promotion",
    area: "chainfire",
    status: "supported",
    summary: "promote a learner by re-adding its member ID with is_learner=false",
    proof: [membershipLane],
  },
  {
    id: "chainfire.endpoint-replace",
    area: "chainfire",
    status: "supported",
    summary: "replace a member's peer or client URLs in place by re-adding its member ID",
    proof: ["packages/chainfire-server membership tests"],
  },
  {
    id: "chainfire.leader-transfer",
    area: "chainfire",
    status: "supported",
    summary: "hand leadership to another live voter with LeaderTransfer before maintenance",
    proof: [membershipLane, "rollout-soak"],
  },
  {
    id: "chainfire.member-remove",
    area: "chainfire",
    status: "supported",
    summary: "remove any member with MemberRemove, including the current leader; the rest elect a new one",
    proof: [membershipLane],
  },
  {
    id: "chainfire.removed-member-readd",
    area: "chainfire",
    status: "supported",
    summary: "add a removed member back under the same ID",
    proof: [membershipLane],
  },
  {
    id: "chainfire.snapshot-restore",
    area: "chainfire",
    status: "supported",
    summary: "snapshot save and offline restore into a fresh cluster before risky maintenance",
    proof: ["durability-proof"],
  },
  {
    id: "chainfire.rolling-restart",
    area: "chainfire",
    status: "supported",
    summary: "rolling SIGTERM restarts and SIGKILL of members without losing acknowledged writes",
    proof: ["rollout-soak"],
  },
  {
    id: "chainfire.multi-voter-change",
    area: "chainfire",
    status: "out-of-scope",
    summary: "changing more than one voter in a single step (joint consensus)",
    proof: [],
  },
  {
    id: "chainfire.large-topology",
    area: "chainfire",
    status: "out-of-scope",
    summary: "live reconfiguration proven beyond 3 canonical members plus one temporary member",
    proof: [],
  },
  {
    id: "chainfire.internal-raft-api",
    area: "chainfire",
    status: "out-of-scope",
    summary: "driving @photoncloud/raft internals directly instead of the published Cluster API",
    proof: [],
  },
  {
    id: "flaredb.logical-backup-restore",
    area: "flaredb",
    status: "supported",
    summary: "logical SQL backup and restore into a fresh cluster, with corrupt backups refused",
    proof: ["durability-proof"],
  },
  {
    id: "flaredb.additive-schema",
    area: "flaredb",
    status: "supported",
    summary: "online additive schema changes: new tables, nullable columns, indexes",
    proof: ["rollout-soak", "packages/flaredb-server schema guard tests"],
  },
  {
    id: "flaredb.maintenance-window",
    area: "flaredb",
    status: "supported",
    summary: "destructive DDL only inside a maintenance window opened against a fresh backup",
    proof: ["packages/flaredb-server schema guard tests"],
  },
  {
    id: "flaredb.online-destructive-migration",
    area: "flaredb",
    status: "out-of-scope",
    summary: "destructive DDL online, or automated destructive cut-over",
    proof: [],
  },
  {
    id: "flaredb.internal-raft-api",
    area: "flaredb",
    status: "out-of-scope",
    summary: "Raft membership helpers inside the libraries as a migration API",
    proof: [],
  },
  {
    id: "iam.bootstrap-hardening",
    area: "iam",
    status: "supported",
    summary: "production start refused until admin token, signing key and 32-byte master key are set",
    proof: ["core-control-plane-ops-proof", "packages/iam-server/test/bootstrap-hardening.test.ts"],
  },
  {
    id: "iam.signing-key-rotation",
    area: "iam",
    status: "supported",
    summary: "signing-key rotation: stage, activate, overlap, retire after TTL or revocation, purge",
    proof: ["packages/iam-authn/test/signing-key-rotation.test.ts"],
  },
  {
    id: "iam.credential-rotation",
    area: "iam",
    status: "supported",
    summary: "credential rotation: mint a second key, move clients, revoke the old one",
    proof: ["packages/iam-api/test/credential-rotation.test.ts"],
  },
  {
    id: "iam.mtls-rotation",
    area: "iam",
    status: "supported",
    summary: "mTLS overlap-and-cutover: trust old and new, cut over, remove old, old rejected",
    proof: ["packages/iam-authn/test/mtls-rotation.test.ts"],
  },
  {
    id: "iam.dev-relaxations",
    area: "iam",
    status: "out-of-scope",
    summary: "unauthenticated admin and random signing keys outside --dev",
    proof: [],
  },
  {
    id: "iam.multi-node-failover",
    area: "iam",
    status: "out-of-scope",
    summary: "several iam nodes with failover between them",
    proof: [],
  },
];

export const laneNames = [
  "core-control-plane-ops-proof",
  "chainfire-live-membership-proof",
  "durability-proof",
  "rollout-soak",
] as const;

/** Text the operator doc must contain verbatim: how to run each lane and where its artifacts go. */
export function requiredDocPhrases(): string[] {
  const phrases = [
    "./nix/test-cluster/run-core-control-plane-ops-proof.sh",
    "scope-fixed-contract.json",
    "result.json",
  ];
  for (const lane of laneNames) {
    phrases.push(`pnpm cluster ${lane}`, `nix run ./nix/test-cluster#cluster -- ${lane}`, `work/${lane}/`);
  }
  phrases.push(
    "chainfire-post-restart-put.json",
    "chainfire-post-restart.json",
    "post-control-plane-restarts.json",
    "flaredb-post-restart-create.json",
    "flaredb-post-restart-insert.json",
    "flaredb-post-restart.json",
    "IAM_ADMIN_TOKEN",
    "PHOTON_IAM_ADMIN_TOKEN",
    "IAM_CRED_MASTER_KEY",
    "authn.internal_token.signing_key",
    "admin.allow_unauthenticated",
    "IAM_ALLOW_UNAUTHENTICATED_ADMIN",
  );
  return phrases;
}

export function scopeMarker(id: string): string {
  return `<!-- scope:${id} -->`;
}
