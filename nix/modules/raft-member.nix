# Shared NixOS module body for the two Raft daemons (chainfire and flaredb): both take etcd's flags,
# so one set of options maps onto one command line. Secrets (TLS keys) are handed over with systemd
# credentials, never copied into the nix store.
{ self, daemon, ports, description }:

{ config, lib, pkgs, ... }:

let
  inherit (lib) mkOption mkEnableOption mkIf types optionals concatStringsSep escapeShellArgs;
  cfg = config.services.photoncloud.${daemon};
  toml = pkgs.formats.toml { };
  url = port: "http://127.0.0.1:${toString port}";
  credDir = "/run/credentials/${daemon}.service";

  tlsFlags = prefix: tls:
    optionals (tls.certFile != null) [ "--${prefix}cert-file" "${credDir}/${prefix}cert" ]
    ++ optionals (tls.keyFile != null) [ "--${prefix}key-file" "${credDir}/${prefix}key" ]
    ++ optionals (tls.trustedCaFile != null) [ "--${prefix}trusted-ca-file" "${credDir}/${prefix}ca" ]
    ++ optionals tls.clientCertAuth [ "--${prefix}client-cert-auth" ];

  tlsCredentials = prefix: tls:
    optionals (tls.certFile != null) [ "${prefix}cert:${tls.certFile}" ]
    ++ optionals (tls.keyFile != null) [ "${prefix}key:${tls.keyFile}" ]
    ++ optionals (tls.trustedCaFile != null) [ "${prefix}ca:${tls.trustedCaFile}" ];

  tlsOptions = what: {
    certFile = mkOption { type = types.nullOr types.path; default = null; description = "${what} certificate (PEM)."; };
    keyFile = mkOption { type = types.nullOr types.str; default = null; description = "${what} private key (PEM); a path outside the store."; };
    trustedCaFile = mkOption { type = types.nullOr types.path; default = null; description = "CA bundle for verifying ${what} peers; giving it requires their certificates, as etcd does."; };
    clientCertAuth = mkOption { type = types.bool; default = false; description = "Require client certificates on the ${what} URLs."; };
  };

  flags =
    [
      "--name" cfg.name
      "--data-dir" cfg.dataDir
      "--listen-client-urls" (concatStringsSep "," cfg.listenClientUrls)
      "--advertise-client-urls" (concatStringsSep "," cfg.advertiseClientUrls)
      "--listen-peer-urls" (concatStringsSep "," cfg.listenPeerUrls)
      "--initial-advertise-peer-urls" (concatStringsSep "," cfg.initialAdvertisePeerUrls)
      "--listen-metrics-urls" (concatStringsSep "," cfg.listenMetricsUrls)
      "--initial-cluster-state" cfg.initialClusterState
      "--initial-cluster-token" cfg.initialClusterToken
      "--heartbeat-interval" (toString cfg.heartbeatInterval)
      "--election-timeout" (toString cfg.electionTimeout)
      "--snapshot-count" (toString cfg.snapshotCount)
    ]
    ++ optionals (cfg.initialCluster != null) [ "--initial-cluster" cfg.initialCluster ]
    ++ optionals (cfg.settings != { }) [ "--config-file" (toml.generate "${daemon}.toml" cfg.settings) ]
    ++ tlsFlags "" cfg.clientTls
    ++ tlsFlags "peer-" cfg.peerTls
    ++ cfg.extraFlags;
in
{
  options.services.photoncloud.${daemon} = {
    enable = mkEnableOption description;
    package = mkOption {
      type = types.package;
      default = self.packages.${pkgs.stdenv.hostPlatform.system}.${daemon};
      defaultText = "the ${daemon} package of this flake";
      description = "Package providing bin/${daemon}.";
    };
    name = mkOption { type = types.str; default = config.networking.hostName; description = "Member name (--name); with the cluster token it determines the member ID."; };
    dataDir = mkOption { type = types.str; default = "/var/lib/${daemon}"; description = "--data-dir"; };
    listenClientUrls = mkOption { type = types.listOf types.str; default = [ (url ports.client) ]; description = "--listen-client-urls"; };
    advertiseClientUrls = mkOption { type = types.listOf types.str; default = cfg.listenClientUrls; defaultText = "listenClientUrls"; description = "--advertise-client-urls"; };
    listenPeerUrls = mkOption { type = types.listOf types.str; default = [ (url ports.peer) ]; description = "--listen-peer-urls"; };
    initialAdvertisePeerUrls = mkOption { type = types.listOf types.str; default = cfg.listenPeerUrls; defaultText = "listenPeerUrls"; description = "--initial-advertise-peer-urls"; };
    listenMetricsUrls = mkOption { type = types.listOf types.str; default = [ (url ports.metrics) ]; description = "--listen-metrics-urls (/metrics, /health, /version)"; };
    initialCluster = mkOption { type = types.nullOr types.str; default = null; example = "node01=https://10.0.0.1:${toString ports.peer},node02=https://10.0.0.2:${toString ports.peer}"; description = "--initial-cluster; ignored once the data directory holds a log."; };
    initialClusterState = mkOption { type = types.enum [ "new" "existing" ]; default = "new"; description = "--initial-cluster-state: existing when joining a running cluster."; };
    initialClusterToken = mkOption { type = types.str; default = "photoncloud-cluster"; description = "--initial-cluster-token"; };
    heartbeatInterval = mkOption { type = types.ints.positive; default = 100; description = "--heartbeat-interval in ms"; };
    electionTimeout = mkOption { type = types.ints.positive; default = 1000; description = "--election-timeout in ms (at least 5 heartbeats)"; };
    snapshotCount = mkOption { type = types.ints.positive; default = 10000; description = "--snapshot-count"; };
    clientTls = tlsOptions "client";
    peerTls = tlsOptions "peer";
    settings = mkOption { type = toml.type; default = { }; description = "Extra keys for the TOML --config-file (same names as the flags)."; };
    extraFlags = mkOption { type = types.listOf types.str; default = [ ]; description = "Further command-line flags."; };
    environmentFile = mkOption { type = types.nullOr types.path; default = null; description = "systemd EnvironmentFile with further settings."; };
    openFirewall = mkOption { type = types.bool; default = false; description = "Open the client and peer ports."; };
  };

  config = mkIf cfg.enable {
    assertions = [{
      assertion = cfg.electionTimeout >= 5 * cfg.heartbeatInterval;
      message = "services.photoncloud.${daemon}: electionTimeout must be at least 5 × heartbeatInterval";
    }];

    users.users.${daemon} = { isSystemUser = true; group = daemon; home = cfg.dataDir; };
    users.groups.${daemon} = { };

    networking.firewall.allowedTCPPorts = mkIf cfg.openFirewall [ ports.client ports.peer ];

    systemd.services.${daemon} = {
      description = description;
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      serviceConfig = {
        ExecStart = "${cfg.package}/bin/${daemon} ${escapeShellArgs flags}";
        User = daemon;
        Group = daemon;
        StateDirectory = lib.mkIf (cfg.dataDir == "/var/lib/${daemon}") daemon;
        StateDirectoryMode = "0700";
        ReadWritePaths = [ cfg.dataDir ];
        LoadCredential = tlsCredentials "" cfg.clientTls ++ tlsCredentials "peer-" cfg.peerTls;
        EnvironmentFile = lib.mkIf (cfg.environmentFile != null) cfg.environmentFile;
        # SIGTERM is the daemon's orderly shutdown; give it time to finish in-flight proposals.
        KillSignal = "SIGTERM";
        TimeoutStopSec = "30s";
        Restart = "on-failure";
        RestartSec = "2s";
        LimitNOFILE = 65536;
        NoNewPrivileges = true;
        PrivateTmp = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        ProtectKernelTunables = true;
        ProtectControlGroups = true;
        RestrictSUIDSGID = true;
      };
    };
  };
}
