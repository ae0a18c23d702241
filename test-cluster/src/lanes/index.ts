// Every proof lane, by the name operators type after `pnpm cluster`.
import type { LaneDefinition } from "../lane.js";
import { chainfireLiveMembershipProof } from "./chainfire-live-membership-proof.js";
import { coreControlPlaneOpsProof } from "./core-control-plane-ops-proof.js";
import { durabilityProof } from "./durability-proof.js";
import { rolloutSoak } from "./rollout-soak.js";

export const lanes: readonly LaneDefinition[] = [
  coreControlPlaneOpsProof,
  chainfireLiveMembershipProof,
  durabilityProof,
  rolloutSoak,
];

export function findLane(name: string): LaneDefinition | undefined {
  return lanes.find((l) => l.name === name);
}
