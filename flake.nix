{
  description = "PhotonCloud core control plane: chainfire (etcd-compatible KV), flaredb (SQL on Raft) and iam";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs:
        let
          # The whole workspace is built once (one pnpm install, one tsc -b); each daemon package
          # is a thin set of wrappers around it.
          workspace = pkgs.callPackage ./nix/workspace.nix { src = self; };
          daemon = name: pkgs.callPackage ./nix/daemon.nix { inherit workspace name; };
        in
        {
          inherit workspace;
          chainfire = daemon "chainfire";
          flaredb = daemon "flaredb";
          iam = daemon "iam";
          default = workspace;
        });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [
            pkgs.nodejs_20
            pkgs.pnpm_10
            pkgs.python3
            pkgs.gnumake
            pkgs.gcc
            pkgs.etcd_3_4
            pkgs.iproute2
            pkgs.nix
          ];
          shellHook = ''
            echo "PhotonCloud dev shell: pnpm install && pnpm build, then pnpm cluster up"
          '';
        };
      });

      # NixOS modules: each runs one daemon as a systemd service. Pass the flake's packages in so
      # that `services.photoncloud.<daemon>.package` defaults to the build from this revision.
      nixosModules = {
        chainfire = import ./nix/modules/chainfire.nix { inherit self; };
        flaredb = import ./nix/modules/flaredb.nix { inherit self; };
        iam = import ./nix/modules/iam.nix { inherit self; };
        default = { imports = [ self.nixosModules.chainfire self.nixosModules.flaredb self.nixosModules.iam ]; };
      };
    };
}
