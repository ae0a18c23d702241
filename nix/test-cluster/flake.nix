{
  description = "PhotonCloud proof lanes: nix run ./nix/test-cluster#cluster -- <lane>";

  inputs = {
    photoncloud.url = "path:../..";
    nixpkgs.follows = "photoncloud/nixpkgs";
  };

  outputs = { self, photoncloud, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (system: pkgs:
        let
          built = photoncloud.packages.${system};
        in
        {
          # The same CLI as `pnpm cluster`, pointed at the packaged daemons. Artifacts go to ./work
          # of the directory it is run from (PHOTON_WORK_DIR overrides). Flags pass through: `--netns`
          # (a network namespace per member) needs root; iproute2's `ip` is on the PATH below.
          cluster = pkgs.writeShellApplication {
            name = "photon-cluster";
            runtimeInputs = [ pkgs.nodejs_20 pkgs.pnpm_10 pkgs.iproute2 ];
            text = ''
              export PHOTON_CHAINFIRE_BIN="${built.chainfire}/bin/chainfire"
              export PHOTON_FLAREDB_BIN="${built.flaredb}/bin/flaredb"
              export PHOTON_IAM_BIN="${built.iam}/bin/iam"
              export PHOTON_WORK_DIR="''${PHOTON_WORK_DIR:-$PWD/work}"
              exec node ${built.workspace}/lib/photoncloud/test-cluster/bin/cluster.js "$@"
            '';
          };
          default = self.packages.${system}.cluster;
        });

      apps = forAllSystems (system: _pkgs: {
        cluster = {
          type = "app";
          program = "${self.packages.${system}.cluster}/bin/photon-cluster";
        };
        default = self.apps.${system}.cluster;
      });
    };
}
