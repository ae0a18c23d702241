export * from "./errors.js";
export * from "./signing-keys.js";
export * from "./tokens.js";
export * from "./jws-sign.js";
export * from "./mtls.js";
export * from "./dev-pki.js";
