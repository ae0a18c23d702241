# One daemon as a package: `bin/<name>` and `bin/<name>ctl` wrappers that run the compiled entry
# points from the workspace with the Node they were built for.
{ lib, runCommand, makeWrapper, nodejs_20, workspace, name }:

let
  pkgDir = {
    chainfire = "chainfire-server";
    flaredb = "flaredb-server";
    iam = "iam-server";
  }.${name};
  root = "${workspace}/lib/photoncloud/packages/${pkgDir}";
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
    makeWrapper ${nodejs_20}/bin/node $out/bin/${name} --add-flags ${root}/bin/${name}.js
    makeWrapper ${nodejs_20}/bin/node $out/bin/${name}ctl --add-flags ${root}/bin/${name}ctl.js
  ''
