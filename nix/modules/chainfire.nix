# services.photoncloud.chainfire: the etcd-compatible key-value store as a systemd service.
{ self }:
import ./raft-member.nix {
  inherit self;
  daemon = "chainfire";
  ports = { client = 2379; peer = 2380; metrics = 2381; };
  description = "PhotonCloud chainfire, the etcd-compatible Raft key-value store";
}
