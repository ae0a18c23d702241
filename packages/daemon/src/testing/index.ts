// @photoncloud/daemon/testing — support for the daemons' tests: a throwaway PKI, free ports and the files the
// process holds open, an HTTP/2 GET, whether a TLS server takes a connection.
export * from "../grpc/test-pki.js";
export { freePort } from "./free-port.js";
export { HTTP2_OPENING, h2OverTlsAnswers } from "./h2-over-tls.js";
export { http2Get } from "./http2-get.js";
export { openFiles } from "./open-files.js";
