# services.photoncloud.flaredb: SQL on Raft as a systemd service.
{ self }:
import ./raft-member.nix {
  inherit self;
  daemon = "flaredb";
  ports = { client = 2479; peer = 2480; metrics = 2481; };
  description = "PhotonCloud flaredb, SQL replicated through Raft";
}
