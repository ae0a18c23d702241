export * from "./errors.js";
export * from "./master-key.js";
export * from "./store.js";
export * from "./audit-log.js";
export * from "./iam-core.js";
export * from "./grpc-services.js";
export * as iamv1 from "./gen/iam/v1/iam.js";
