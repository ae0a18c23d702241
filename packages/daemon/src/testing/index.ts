// @photoncloud/daemon/testing — support for the daemons' tests: a throwaway PKI and free ports.
export * from "../grpc/test-pki.js";
export { freePort } from "./free-port.js";
