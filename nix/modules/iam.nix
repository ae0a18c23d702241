# services.photoncloud.iam: the iam daemon as a systemd service, in production mode by default.
# The admin token, signing key and credential master key are read from files outside the nix store
# through systemd credentials; a small launcher exports them as the environment variables iam reads,
# so they never appear on a command line or in the store.
{ self }:

{ config, lib, pkgs, ... }:

let
  inherit (lib) mkOption mkEnableOption mkIf types optionals concatStringsSep escapeShellArgs;
  cfg = config.services.photoncloud.iam;
  toml = pkgs.formats.toml { };
  credDir = "/run/credentials/iam.service";

  flags =
    [
      "--data-dir" cfg.dataDir
      "--listen-client-urls" (concatStringsSep "," cfg.listenClientUrls)
      "--listen-http-urls" (concatStringsSep "," cfg.listenHttpUrls)
    ]
    ++ optionals cfg.dev [ "--dev" ]
    ++ optionals (cfg.settings != { }) [ "--config-file" (toml.generate "iam.toml" cfg.settings) ]
    ++ optionals (cfg.certFile != null) [ "--cert-file" "${credDir}/tls-cert" ]
    ++ optionals (cfg.keyFile != null) [ "--key-file" "${credDir}/tls-key" ]
    ++ cfg.extraFlags;

  launcher = pkgs.writeShellScript "iam-launch" ''
    set -eu
    if [ -r "${credDir}/admin-token" ]; then export IAM_ADMIN_TOKEN="$(cat ${credDir}/admin-token)"; fi
    if [ -r "${credDir}/cred-master-key" ]; then export IAM_CRED_MASTER_KEY="$(cat ${credDir}/cred-master-key)"; fi
    if [ -r "${credDir}/signing-key" ]; then export IAM_SIGNING_KEY="${credDir}/signing-key"; fi
    exec ${cfg.package}/bin/iam ${escapeShellArgs flags}
  '';

  secretOption = what: mkOption {
    type = types.nullOr types.str;
    default = null;
    example = "/run/keys/iam/${what}";
    description = "File holding the ${what} (keep it outside the nix store, readable by root only).";
  };
in
{
  options.services.photoncloud.iam = {
    enable = mkEnableOption "PhotonCloud iam (tokens, credentials, mTLS identities)";
    package = mkOption {
      type = types.package;
      default = self.packages.${pkgs.stdenv.hostPlatform.system}.iam;
      defaultText = "the iam package of this flake";
      description = "Package providing bin/iam.";
    };
    dataDir = mkOption { type = types.str; default = "/var/lib/iam"; description = "--data-dir (holds iam.db)"; };
    listenClientUrls = mkOption { type = types.listOf types.str; default = [ "http://127.0.0.1:8543" ]; description = "--listen-client-urls (gRPC; https:// enables TLS and mTLS identities)"; };
    listenHttpUrls = mkOption { type = types.listOf types.str; default = [ "http://127.0.0.1:8544" ]; description = "--listen-http-urls (JWKS, health, metrics)"; };
    dev = mkOption { type = types.bool; default = false; description = "Development mode: relaxes bootstrap hardening. Never in production."; };
    adminTokenFile = secretOption "admin token (IAM_ADMIN_TOKEN)";
    signingKeyFile = secretOption "PEM signing key (authn.internal_token.signing_key)";
    credMasterKeyFile = secretOption "32-byte credential master key (IAM_CRED_MASTER_KEY, 64 hex chars or base64)";
    certFile = mkOption { type = types.nullOr types.path; default = null; description = "TLS certificate for https:// listeners."; };
    keyFile = mkOption { type = types.nullOr types.str; default = null; description = "Its private key (outside the store)."; };
    settings = mkOption { type = toml.type; default = { }; description = "TOML --config-file contents (e.g. authn.internal_token.ttl_seconds). Put no secrets here: they would land in the store."; };
    extraFlags = mkOption { type = types.listOf types.str; default = [ ]; description = "Further command-line flags."; };
    environmentFile = mkOption { type = types.nullOr types.path; default = null; description = "systemd EnvironmentFile (alternative way to pass IAM_* settings)."; };
  };

  config = mkIf cfg.enable {
    assertions = [{
      assertion = cfg.dev || cfg.environmentFile != null
        || (cfg.adminTokenFile != null && cfg.signingKeyFile != null && cfg.credMasterKeyFile != null);
      message = "services.photoncloud.iam: production mode needs adminTokenFile, signingKeyFile and credMasterKeyFile (or an environmentFile providing them); iam refuses to start without them";
    }];

    users.users.iam = { isSystemUser = true; group = "iam"; home = cfg.dataDir; };
    users.groups.iam = { };

    systemd.services.iam = {
      description = "PhotonCloud iam";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      serviceConfig = {
        ExecStart = "${launcher}";
        User = "iam";
        Group = "iam";
        StateDirectory = lib.mkIf (cfg.dataDir == "/var/lib/iam") "iam";
        StateDirectoryMode = "0700";
        ReadWritePaths = [ cfg.dataDir ];
        LoadCredential =
          optionals (cfg.adminTokenFile != null) [ "admin-token:${cfg.adminTokenFile}" ]
          ++ optionals (cfg.signingKeyFile != null) [ "signing-key:${cfg.signingKeyFile}" ]
          ++ optionals (cfg.credMasterKeyFile != null) [ "cred-master-key:${cfg.credMasterKeyFile}" ]
          ++ optionals (cfg.keyFile != null) [ "tls-key:${cfg.keyFile}" ]
          ++ optionals (cfg.certFile != null) [ "tls-cert:${cfg.certFile}" ];
        EnvironmentFile = lib.mkIf (cfg.environmentFile != null) cfg.environmentFile;
        KillSignal = "SIGTERM";
        TimeoutStopSec = "30s";
        # Exit status 2 is a refused (misconfigured) start: restarting would only repeat it.
        Restart = "on-failure";
        RestartPreventExitStatus = "2";
        NoNewPrivileges = true;
        PrivateTmp = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        RestrictSUIDSGID = true;
      };
    };
  };
}
