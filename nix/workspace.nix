# The compiled monorepo: dependencies from pnpm-lock.yaml (fetched as a fixed-output derivation),
# better-sqlite3's native addon built against this Node, and every package compiled with tsc -b.
# After a change to pnpm-lock.yaml, build once and copy the hash nix reports into pnpmDeps.hash.
{ lib, stdenv, nodejs_20, pnpm_10, python3, makeWrapper, src }:

stdenv.mkDerivation (finalAttrs: {
  pname = "photoncloud";
  version = "0.1.0";
  inherit src;

  nativeBuildInputs = [ nodejs_20 pnpm_10.configHook python3 makeWrapper ];

  pnpmDeps = pnpm_10.fetchDeps {
    inherit (finalAttrs) pname version src;
    hash = lib.fakeHash;
  };

  buildPhase = ''
    runHook preBuild
    pnpm rebuild better-sqlite3
    pnpm exec tsc -b tsconfig.json
    runHook postBuild
  '';

  installPhase = ''
    runHook preInstall
    mkdir -p $out/lib/photoncloud
    cp -r package.json pnpm-workspace.yaml tsconfig.base.json tsconfig.json vitest.config.ts \
      node_modules packages test-cluster proto docs $out/lib/photoncloud/
    runHook postInstall
  '';

  meta = {
    description = "PhotonCloud control-plane workspace (chainfire, flaredb, iam, test-cluster)";
    license = lib.licenses.asl20;
    platforms = lib.platforms.linux;
  };
})
