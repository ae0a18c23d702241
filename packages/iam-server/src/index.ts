export * from "./bootstrap.js";
export * from "./options.js";
export * from "./iam-daemon.js";
export * from "./iamctl.js";
