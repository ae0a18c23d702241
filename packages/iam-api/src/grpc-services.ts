import { timingSafeEqual } from "node:crypto";
import type { Metadata, ServerUnaryCall, UntypedServiceImplementation, sendUnaryData } from "@grpc/grpc-js";
import { reusingEncoder } from "@photoncloud/daemon";
import type { SigningKeyRecord, ValidatedToken } from "@photoncloud/iam-authn";
import { auditUnavailable, toGrpcError, unauthenticated } from "./errors.js";
import {
  CredentialsService,
  MtlsIdentitiesService,
  PrincipalsService,
  SigningKeysService,
  TokensService,
  type Credential,
  IssueTokenResponse,
  type IssueTokenRequest,
  ValidateTokenResponse,
  type Principal,
  type SigningKey,
} from "./gen/iam/v1/iam.js";
import type { AuditLog } from "./audit-log.js";
import type { Caller, IamCore } from "./iam-core.js";
import type { CredentialRow, PrincipalRow } from "./store.js";

/** How admin calls are recognised. */
export interface AdminAuthOptions {
  /** The admin token, or null when none is configured (then only dev-mode unauthenticated admin works). */
  token: string | null;
  /** Dev only: treat callers without credentials as admin. */
  allowUnauthenticated: boolean;
}

/**
 * Compares a presented admin token with the configured one in constant time. The comparison always
 * runs over the configured token's length: a presented token of another length is replaced by a
 * decoy of the right length (and refused), so neither the content nor the length of the admin token
 * shows in the time taken. (HMACing both sides would equalise lengths too, but constructing an HMAC
 * costs several microseconds per call, measurable on every admin-authenticated IssueToken.)
 */
export function adminTokenMatcher(token: string | null): (presented: string) => boolean {
  if (token === null) return () => false;
  const want = Buffer.from(token);
  const decoy = Buffer.alloc(want.length);
  return (presented) => {
    const given = Buffer.from(presented);
    const sameLength = given.length === want.length;
    return timingSafeEqual(sameLength ? given : decoy, want) && sameLength;
  };
}

type Handler<Req, Res> = (req: Req, caller: Caller, call: ServerUnaryCall<Req, Res>) => Promise<Res> | Res;

const ms = (v: number | null): bigint => BigInt(v ?? 0);

export const toSigningKey = (r: SigningKeyRecord): SigningKey => ({
  kid: r.kid,
  alg: r.alg,
  state: r.state,
  createdAt: ms(r.createdAtMs),
  activatedAt: ms(r.activatedAtMs),
  deactivatedAt: ms(r.deactivatedAtMs),
  populationRevokedAt: ms(r.populationRevokedAtMs),
  retiredAt: ms(r.retiredAtMs),
  purgedAt: ms(r.purgedAtMs),
});

const toPrincipal = (p: PrincipalRow): Principal => ({
  id: p.id,
  kind: p.kind,
  displayName: p.displayName,
  enabled: p.enabled,
  notBeforeEpochSeconds: BigInt(p.notBeforeEpochSeconds),
  createdAt: ms(p.createdAtMs),
});

const toCredential = (c: CredentialRow): Credential => ({
  accessKeyId: c.accessKeyId,
  principalId: c.principalId,
  state: c.state,
  createdAt: ms(c.createdAtMs),
  lastUsedAt: ms(c.lastUsedAtMs),
  revokedAt: ms(c.revokedAtMs),
});

const adminCaller: Caller = Object.freeze({ kind: "admin" });
const anonymousCaller: Caller = Object.freeze({ kind: "anonymous" });
const principalCaller = (v: ValidatedToken): Caller => ({ kind: "principal", principalId: v.subject });

const validateResponse = (v: ValidatedToken) => ({
  principalId: v.subject,
  jti: v.jti,
  kid: v.kid,
  issuedAtSeconds: BigInt(v.issuedAtSeconds),
  expiresAtSeconds: BigInt(v.expiresAtSeconds),
});

/**
 * iam.v1.Tokens with the hot responses (IssueToken, ValidateToken) serialised through reused, pooled
 * writers (see reusingEncoder).
 */
export const tokensDefinition = {
  ...TokensService,
  issueToken: { ...TokensService.issueToken, responseSerialize: reusingEncoder(IssueTokenResponse) },
  validateToken: { ...TokensService.validateToken, responseSerialize: reusingEncoder(ValidateTokenResponse) },
};

/**
 * Audit before answer. A call that made audit records (seen as a change of `audit.recorded` since
 * `before`) is answered only once the batch holding its last record is committed; one that made none
 * is answered at once. If the record cannot be written the call fails with UNAVAILABLE instead of
 * answering unaudited. For a handler that settles later, `before` is taken when the call started, so
 * records made meanwhile by other calls also count: it may wait for a commit it did not need, never
 * answer before one it needed.
 */
function auditedReply(audit: AuditLog) {
  return {
    ok<Res>(before: number, callback: sendUnaryData<Res>, res: Res): void {
      const last = audit.recorded;
      if (last === before) callback(null, res);
      else
        audit.whenDurable(last, (err) =>
          err === null ? callback(null, res) : callback(toGrpcError(auditUnavailable(err))),
        );
    },
    fail<Res>(before: number, callback: sendUnaryData<Res>, error: unknown): void {
      const last = audit.recorded;
      if (last === before) callback(toGrpcError(error));
      else
        audit.whenDurable(last, (err) => callback(toGrpcError(err === null ? error : auditUnavailable(err))));
    },
  };
}

/** Runs a handler for a known caller and answers (after its audit records are durable). */
function runHandler<Req, Res>(
  handler: Handler<Req, Res>,
  call: ServerUnaryCall<Req, Res>,
  caller: Caller,
  callback: sendUnaryData<Res>,
  reply: ReturnType<typeof auditedReply>,
  before: number,
): void {
  let res: Res | Promise<Res>;
  try {
    res = handler(call.request, caller, call);
  } catch (err) {
    reply.fail(before, callback, err);
    return;
  }
  if (res instanceof Promise)
    res.then(
      (r) => reply.ok(before, callback, r),
      (err: unknown) => reply.fail(before, callback, err),
    );
  else reply.ok(before, callback, res);
}

/** Builds the gRPC implementations of every iam.v1 service over one IamCore. */
export function createIamServices(core: IamCore, admin: AdminAuthOptions) {
  const isAdminToken = adminTokenMatcher(admin.token);
  const audit = core.audit;
  const reply = auditedReply(audit);

  /**
   * Who is calling. Synchronous for the admin token, for no token and for a token verified before;
   * a promise only when a bearer token must have its signature checked.
   */
  function callerOf(metadata: Metadata): Caller | Promise<Caller> {
    const header = metadata.get("authorization")[0];
    const bearer = typeof header === "string" && header.startsWith("Bearer ") ? header.slice(7) : null;
    if (bearer === null) return admin.allowUnauthenticated ? adminCaller : anonymousCaller;
    if (isAdminToken(bearer)) return adminCaller;
    // Not the admin token: it must be a valid issued token, or the call is refused outright.
    const v = core.validateToken(bearer);
    return v instanceof Promise ? v.then(principalCaller) : principalCaller(v);
  }

  /**
   * Adapts a handler to grpc-js. Most calls that make no audit record (admin token or a known bearer
   * token, synchronous handler) are answered in the same turn, with no promise: awaiting costs a
   * microtask hop and an allocation per step on the hot path. Promises are followed only where one
   * was returned, or where an audit record must be committed before the answer.
   */
  function unary<Req, Res>(handler: Handler<Req, Res>) {
    return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
      const before = audit.recorded;
      let caller: Caller | Promise<Caller>;
      try {
        caller = callerOf(call.metadata);
      } catch (err) {
        return reply.fail(before, callback, err);
      }
      if (caller instanceof Promise)
        caller.then(
          // A caller resolved without audit records: the handler's own records are what count.
          (c) => runHandler(handler, call, c, callback, reply, audit.recorded),
          (err: unknown) => reply.fail(before, callback, err),
        );
      else runHandler(handler, call, caller, callback, reply, before);
    };
  }

  const tokens: UntypedServiceImplementation = {
    issueToken: unary<IssueTokenRequest, IssueTokenResponse>((req, caller, call) => {
      let principalId: string;
      let via: string;
      if (req.accessKey) {
        principalId = core.authenticateAccessKey(req.accessKey.accessKeyId, req.accessKey.secret);
        via = `access-key:${req.accessKey.accessKeyId}`;
      } else if (req.clientCertificate) {
        const cert = call.getAuthContext?.()?.sslPeerCertificate;
        if (!cert?.raw)
          throw unauthenticated(
            "no verified TLS client certificate on this connection: it must chain to a configured trust root (CERT_UNTRUSTED)",
          );
        const id = core.authenticateCertificate(cert.raw);
        principalId = id.principalId;
        via = `mtls:${id.uriSan}`;
      } else if (req.adminSubject) {
        if (caller.kind !== "admin") throw unauthenticated("admin_subject needs the admin token");
        principalId = req.adminSubject;
        via = "admin";
      } else {
        throw unauthenticated("give access_key, client_certificate or admin_subject");
      }
      const t = core.issueToken(principalId, via, req.ttlSeconds, req.audience);
      return {
        token: t.token,
        jti: t.jti,
        kid: t.kid,
        principalId,
        expiresAtSeconds: BigInt(t.expiresAtSeconds),
      };
    }),
    validateToken: (call: ServerUnaryCall<{ token: string }, unknown>, callback: sendUnaryData<unknown>) => {
      // Validation needs no caller identity: skip caller resolution on this hot path. A token verified
      // before is answered synchronously. Only refusals are audited: a valid token is answered
      // without waiting for the audit log, a refusal once its record is durable.
      const before = audit.recorded;
      let v: ValidatedToken | Promise<ValidatedToken>;
      try {
        v = core.validateToken(call.request.token);
      } catch (err) {
        return reply.fail(before, callback, err);
      }
      if (v instanceof Promise)
        v.then(
          (r) => callback(null, validateResponse(r)),
          (err: unknown) => reply.fail(before, callback, err),
        );
      else callback(null, validateResponse(v));
    },
    revokeToken: unary<{ token: string; jti: string; expiresAtSeconds: bigint }, { jti: string }>(
      async (req, caller) => ({
        jti: await core.revokeToken(caller, req.token, req.jti, Number(req.expiresAtSeconds)),
      }),
    ),
    getJwks: unary<object, { jwksJson: string }>(() => ({ jwksJson: JSON.stringify(core.keys.jwks()) })),
  };

  const keys: UntypedServiceImplementation = {
    addKey: unary<{ alg: string; privateKeyPem: string }, SigningKey>(async (req, caller) =>
      toSigningKey(await core.addKey(caller, req.alg, req.privateKeyPem)),
    ),
    activateKey: unary<{ kid: string }, SigningKey>((req, c) =>
      toSigningKey(core.keyTransition(c, "activate", req.kid)),
    ),
    revokeKeyPopulation: unary<{ kid: string }, SigningKey>((req, c) =>
      toSigningKey(core.keyTransition(c, "revoke-population", req.kid)),
    ),
    retireKey: unary<{ kid: string }, SigningKey>((req, c) =>
      toSigningKey(core.keyTransition(c, "retire", req.kid)),
    ),
    purgeKey: unary<{ kid: string }, SigningKey>((req, c) =>
      toSigningKey(core.keyTransition(c, "purge", req.kid)),
    ),
    listKeys: unary<object, { keys: SigningKey[] }>((_req, caller) => {
      if (caller.kind !== "admin") throw unauthenticated("ListKeys needs the admin token");
      return { keys: core.keys.list().map(toSigningKey) };
    }),
  };

  const principals: UntypedServiceImplementation = {
    createPrincipal: unary<{ id: string; kind: string; displayName: string }, Principal>((req, c) =>
      toPrincipal(core.createPrincipal(c, req.id, req.kind || "service", req.displayName)),
    ),
    getPrincipal: unary<{ id: string }, Principal>((req) => toPrincipal(core.principal(req.id))),
    listPrincipals: unary<object, { principals: Principal[] }>(() => ({
      principals: core.listPrincipals().map(toPrincipal),
    })),
    setPrincipalEnabled: unary<{ id: string; enabled: boolean }, Principal>((req, c) =>
      toPrincipal(core.setPrincipalEnabled(c, req.id, req.enabled)),
    ),
    bumpNotBefore: unary<{ id: string }, Principal>((req, c) => toPrincipal(core.bumpNotBefore(c, req.id))),
  };

  const credentials: UntypedServiceImplementation = {
    createCredential: unary<{ principalId: string }, { credential: Credential; secret: string }>((req, c) => {
      const created = core.createCredential(c, req.principalId);
      return { credential: toCredential(created.credential), secret: created.secret };
    }),
    getCredentialSecret: unary<{ accessKeyId: string }, { accessKeyId: string; secret: string }>(
      (req, c) => ({
        accessKeyId: req.accessKeyId,
        secret: core.credentialSecret(c, req.accessKeyId),
      }),
    ),
    listCredentials: unary<{ principalId: string }, { credentials: Credential[] }>((req, c) => ({
      credentials: core.listCredentials(c, req.principalId).map(toCredential),
    })),
    revokeCredential: unary<{ accessKeyId: string }, Credential>((req, c) =>
      toCredential(core.revokeCredential(c, req.accessKeyId)),
    ),
  };

  const mtls: UntypedServiceImplementation = {
    addTrustRoot: unary<{ id: string; certificatePem: string }, object>((req, c) => {
      const r = core.addTrustRoot(c, req.id, req.certificatePem);
      return { id: r.id, subject: r.subject, fingerprintSha256: r.fingerprint256 };
    }),
    removeTrustRoot: unary<{ id: string }, { removed: boolean }>((req, c) => ({
      removed: core.removeTrustRoot(c, req.id),
    })),
    listTrustRoots: unary<object, object>(() => ({
      trustRoots: core.mtls
        .trustRoots()
        .map((r) => ({ id: r.id, subject: r.subject, fingerprintSha256: r.fingerprint256 })),
    })),
    mapIdentity: unary<{ uriSan: string; principalId: string }, object>((req, c) => {
      core.mapIdentity(c, req.uriSan, req.principalId);
      return req;
    }),
    unmapIdentity: unary<{ uriSan: string }, { removed: boolean }>((req, c) => ({
      removed: core.unmapIdentity(c, req.uriSan),
    })),
    listIdentities: unary<object, object>(() => ({ identities: core.mtls.identities() })),
  };

  return [
    // The calls every service makes: served by the daemon kit's lean unary path.
    {
      definition: tokensDefinition,
      implementation: tokens,
      leanUnaryMethods: ["issueToken", "validateToken"],
    },
    { definition: SigningKeysService, implementation: keys },
    { definition: PrincipalsService, implementation: principals },
    { definition: CredentialsService, implementation: credentials },
    { definition: MtlsIdentitiesService, implementation: mtls },
  ];
}
