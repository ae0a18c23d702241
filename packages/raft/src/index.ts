export const RAFT_PACKAGE = "@photoncloud/raft";
