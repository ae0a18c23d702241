// @photoncloud/daemon/testing — support for the daemons' tests: a throwaway PKI, free ports and the files the
// process holds open.
export * from "../grpc/test-pki.js";
export { freePort } from "./free-port.js";
export { openFiles } from "./open-files.js";
