export const DAEMON_PACKAGE = "@photoncloud/daemon";
