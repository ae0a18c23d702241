// etcd's interceptor checks, in front of every etcd service handler: learners and calls that require
// a leader. The daemon and the test server put the same guard in front of their handlers.
import type {
  Metadata,
  sendUnaryData,
  ServerUnaryCall,
  ServiceDefinition,
  UntypedServiceImplementation,
} from "@grpc/grpc-js";
import type { etcd } from "@photoncloud/chainfire-api";
import { chainfireError } from "../errors.js";
import type { MemberFacts } from "./context.js";
import { grpcError } from "./grpc-util.js";
import { requiresLeader } from "./require-leader.js";

/** etcd's learner rule: Status, and Range with serializable=true; nothing else. */
function allowedForLearner(method: string, request: unknown): boolean {
  if (method === "status") return true;
  return method === "range" && (request as etcd.RangeRequest).serializable === true;
}

type AnyUnary = (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => void;
type AnyStream = (call: { metadata: Metadata; emit(event: "error", err: unknown): boolean }) => void;

/**
 * etcd's checks before any handler: a learner serves only what learners may, and a call that requires
 * a leader (`hasleader: true` metadata, clientv3's WithRequireLeader) is refused with "no leader" on
 * a member that knows none. The metadata is read only then, so the hot path does not build it.
 * (Watch and keep-alive streams also go on checking while open: see require-leader.ts.)
 */
export function guardEtcdService(
  definition: ServiceDefinition,
  implementation: object,
  member: MemberFacts,
): UntypedServiceImplementation {
  const isLearner = () => member.isLearner();
  const refused = () => grpcError(chainfireError("NOT_SUPPORTED_FOR_LEARNER"));
  const leaderless = (call: { metadata: Metadata }) => member.leaderId() === 0n && requiresLeader(call);
  const wrapped: UntypedServiceImplementation = {};
  for (const [name, handler] of Object.entries(implementation)) {
    const method = definition[name];
    if (method === undefined) continue;
    if (method.requestStream || method.responseStream) {
      wrapped[name] = ((call) => {
        if (isLearner()) call.emit("error", refused());
        else if (leaderless(call)) call.emit("error", grpcError(chainfireError("NO_LEADER")));
        else (handler as AnyStream)(call);
      }) as AnyStream;
    } else {
      wrapped[name] = ((call, callback) => {
        if (isLearner() && !allowedForLearner(name, call.request)) callback(refused());
        else if (leaderless(call)) callback(grpcError(chainfireError("NO_LEADER")));
        else (handler as AnyUnary)(call, callback);
      }) as AnyUnary;
    }
  }
  return wrapped;
}
