// Proves docs/control-plane-ops.md carries every scope marker, lane command and artifact path the contract requires.
import { expect, it } from "vitest";
import { scopeItems } from "../src/contract.js";
import { docMarkers } from "../src/lanes/core-control-plane-ops-proof.js";

it("finds every scope marker and required phrase in the operator doc", () => {
  const found = docMarkers();
  expect(found.markers.map((m) => m.id)).toEqual(scopeItems.map((i) => i.id));
  expect(found.markers.every((m) => m.line !== null)).toBe(true);
  expect(found.phrases.every((p) => p.line !== null)).toBe(true);
});
