# One daemon as a package: `bin/<name>` and `bin/<name>ctl` wrappers that run the entry points the
# workspace package declares in its package.json "bin" (read at evaluation time, so a package that
# moves its bins into dist/ needs no change here) with the Node they were built for.
{ lib, runCommand, makeWrapper, nodejs_20, workspace, name }:

let
  pkgDir = {
    chainfire = "chainfire-server";
    flaredb = "flaredb-server";
    iam = "iam-server";
  }.${name};
  root = "${workspace}/lib/photoncloud/packages/${pkgDir}";
  bins = (builtins.fromJSON (builtins.readFile ../packages/${pkgDir}/package.json)).bin;
  # The chainfire daemon runs with the Node.js arguments it is measured with (CHAINFIRE_NODE_ARGS in
  # packages/daemon/src/node-args.ts; a test there keeps the two the same).
  nodeFlags = if name == "chainfire" then "--initial-old-space-size=256 " else "";
  # ... and with the environment it is measured with (chainfireEnv, same file): malloc on huge pages.
  envFlags = if name == "chainfire" then "--suffix GLIBC_TUNABLES : glibc.malloc.hugetlb=1 " else "";
  wrap = bin: flags: env: "makeWrapper ${nodejs_20}/bin/node $out/bin/${bin} ${env}--add-flags '${flags}${root}/${bins.${bin}}'";
in
runCommand "photoncloud-${name}-${workspace.version}"
  {
    nativeBuildInputs = [ makeWrapper ];
    meta = {
      description = "PhotonCloud ${name} daemon and ${name}ctl";
      mainProgram = name;
      platforms = lib.platforms.linux;
    };
  }
  ''
    mkdir -p $out/bin
    ${wrap name nodeFlags envFlags}
    ${wrap "${name}ctl" "" ""}
  ''
