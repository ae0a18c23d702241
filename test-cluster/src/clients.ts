// Thin promise wrappers over the daemons' public gRPC APIs, as an operator's tool would use them:
// the membership/status contract (chainfire.v1.Cluster, and flaredb.v1.Cluster with the same
// messages), chainfire's etcd KV, and flaredb's SQL service.
import {
  type CallOptions,
  type Client,
  credentials,
  Metadata,
  makeGenericClientConstructor,
  type ServiceDefinition,
  type ServiceError,
} from "@grpc/grpc-js";
import { chainfirev1, createClients, type etcd } from "@photoncloud/chainfire-api";
import { pb } from "@photoncloud/flaredb-server";

type Callback<Res> = (err: ServiceError | null, res: Res) => void;
type UnaryMethod<Req, Res> = (
  req: Req,
  md: Metadata,
  opts: Partial<CallOptions>,
  cb: Callback<Res>,
) => unknown;

/** One unary call with a deadline. */
export function unary<Req, Res>(
  client: Client,
  method: UnaryMethod<Req, Res>,
  request: Req,
  deadlineMs = 5000,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    method.call(client, request, new Metadata(), { deadline: Date.now() + deadlineMs }, (err, res) =>
      err ? reject(err) : resolve(res),
    );
  });
}

/** `http://127.0.0.1:2379` → `127.0.0.1:2379` (what grpc-js wants). */
export function grpcTarget(url: string): string {
  return url.replace(/^[a-z]+:\/\//, "").replace(/\/$/, "");
}

export type MembershipService = "chainfire.v1.Cluster" | "flaredb.v1.Cluster";

/** The chainfire.v1.Cluster definition, re-pathed for flaredb (whose messages are identical). */
function membershipDefinition(service: MembershipService): ServiceDefinition {
  const base = chainfirev1.ClusterService as unknown as Record<string, { path: string }>;
  const entries = Object.entries(base).map(([key, method]) => [
    key,
    { ...method, path: method.path.replace("/chainfire.v1.Cluster/", `/${service}/`) },
  ]);
  return Object.fromEntries(entries) as ServiceDefinition;
}

export type Member = chainfirev1.Member;
export type StatusResponse = chainfirev1.StatusResponse;

/** The operator membership API of one member. */
export class MembershipClient {
  private readonly client: Client & Record<string, UnaryMethod<unknown, unknown>>;

  constructor(service: MembershipService, clientUrl: string) {
    const Ctor = makeGenericClientConstructor(membershipDefinition(service), service);
    this.client = new Ctor(grpcTarget(clientUrl), credentials.createInsecure()) as never;
  }

  private call<Res>(method: string, request: unknown, deadlineMs?: number): Promise<Res> {
    const fn = this.client[method];
    if (fn === undefined) throw new Error(`no method ${method}`);
    return unary(this.client, fn as UnaryMethod<unknown, Res>, request, deadlineMs);
  }

  status(deadlineMs = 3000): Promise<chainfirev1.StatusResponse> {
    return this.call("status", {}, deadlineMs);
  }
  memberList(): Promise<chainfirev1.MemberListResponse> {
    return this.call("memberList", {});
  }
  memberAdd(req: Partial<chainfirev1.MemberAddRequest>): Promise<chainfirev1.MemberAddResponse> {
    const full: chainfirev1.MemberAddRequest = {
      id: req.id ?? 0n,
      name: req.name ?? "",
      peerUrls: req.peerUrls ?? [],
      clientUrls: req.clientUrls ?? [],
      isLearner: req.isLearner ?? false,
    };
    return this.call("memberAdd", full, 15_000);
  }
  memberRemove(id: bigint): Promise<chainfirev1.MemberRemoveResponse> {
    return this.call("memberRemove", { id }, 15_000);
  }
  leaderTransfer(target: { id?: bigint; name?: string }): Promise<chainfirev1.LeaderTransferResponse> {
    const req = { targetId: target.id ?? 0n, targetName: target.name ?? "" };
    return this.call("leaderTransfer", req, 15_000);
  }
  close(): void {
    this.client.close();
  }
}

/** chainfire's etcd KV: the calls the lanes need. */
export class KvClient {
  private readonly clients;

  constructor(clientUrl: string) {
    this.clients = createClients(grpcTarget(clientUrl));
  }

  put(key: string, value: string, deadlineMs = 5000): Promise<etcd.PutResponse> {
    const req: etcd.PutRequest = {
      key: Buffer.from(key),
      value: Buffer.from(value),
      lease: 0n,
      prevKv: false,
      ignoreValue: false,
      ignoreLease: false,
    };
    return unary(this.clients.kv, this.clients.kv.put as never, req, deadlineMs);
  }

  /** A range over `prefix`; serializable reads are answered from the member's own state. */
  range(
    prefix: string,
    options: { serializable?: boolean; revision?: bigint } = {},
  ): Promise<etcd.RangeResponse> {
    const key = Buffer.from(prefix);
    const rangeEnd = Buffer.from(key);
    rangeEnd[rangeEnd.length - 1] = (rangeEnd[rangeEnd.length - 1] ?? 0) + 1;
    // ts-proto's encoder needs every field present.
    const req: etcd.RangeRequest = {
      key,
      rangeEnd,
      limit: 0n,
      revision: options.revision ?? 0n,
      sortOrder: 0,
      sortTarget: 0,
      serializable: options.serializable ?? false,
      keysOnly: false,
      countOnly: false,
      minModRevision: 0n,
      maxModRevision: 0n,
      minCreateRevision: 0n,
      maxCreateRevision: 0n,
    };
    return unary(this.clients.kv, this.clients.kv.range as never, req, 10_000);
  }

  close(): void {
    this.clients.close();
  }
}

export type SqlValue = null | bigint | number | string | Buffer;

/** ts-proto's encoders need every field present: a statement with positional parameters only. */
function statement(sql: string, params: SqlValue[]): pb.Statement {
  return { sql, positional: params.map(toValue), named: [] };
}

function toValue(v: SqlValue): pb.Value {
  if (v === null) return { nullValue: true } as pb.Value;
  if (typeof v === "bigint") return { intValue: v } as pb.Value;
  if (typeof v === "number") return { realValue: v } as pb.Value;
  if (typeof v === "string") return { textValue: v } as pb.Value;
  return { blobValue: v } as pb.Value;
}

function fromValue(v: pb.Value): SqlValue {
  const kind = v as { intValue?: bigint; realValue?: number; textValue?: string; blobValue?: Buffer };
  return kind.intValue ?? kind.realValue ?? kind.textValue ?? kind.blobValue ?? null;
}

/** flaredb's SQL service: execute, query (streamed pages collected), backup and restore. */
export class SqlClient {
  private readonly client: pb.FlareDBServiceClient;

  constructor(clientUrl: string) {
    this.client = new pb.FlareDBServiceClient(grpcTarget(clientUrl), credentials.createInsecure());
  }

  execute(sql: string, params: SqlValue[] = [], deadlineMs = 10_000): Promise<pb.ExecuteResponse> {
    const req: pb.ExecuteRequest = { statements: [statement(sql, params)], transaction: false };
    return unary(this.client, this.client.execute as never, req, deadlineMs);
  }

  query(sql: string, consistency: pb.Consistency, params: SqlValue[] = []): Promise<SqlValue[][]> {
    const req: pb.QueryRequest = {
      statement: statement(sql, params),
      consistency,
      freshnessMs: 0n,
      pageRows: 0,
    };
    const stream = this.client.query(req, { deadline: Date.now() + 15_000 });
    return new Promise((resolve, reject) => {
      const rows: SqlValue[][] = [];
      stream.on("data", (page: pb.QueryResponse) => {
        for (const row of page.rows) rows.push(row.values.map(fromValue));
      });
      stream.on("error", reject);
      stream.on("end", () => resolve(rows));
    });
  }

  /** The whole backup stream: bytes plus the info the server reports. */
  backup(format: pb.BackupFormat): Promise<{ data: Buffer; info: pb.BackupInfo | undefined }> {
    return this.backupWith(format, pb.Consistency.CONSISTENCY_LINEARIZABLE);
  }

  /** A backup at a chosen consistency: NONE gives this member's own state (replica comparison). */
  backupWith(
    format: pb.BackupFormat,
    consistency: pb.Consistency,
  ): Promise<{ data: Buffer; info: pb.BackupInfo | undefined }> {
    const req: pb.BackupRequest = { format, consistency };
    const stream = this.client.backup(req, {
      deadline: Date.now() + 60_000,
    });
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let info: pb.BackupInfo | undefined;
      stream.on("data", (msg: pb.BackupResponse) => {
        if (msg.data.length > 0) chunks.push(Buffer.from(msg.data));
        if (msg.info !== undefined) info = msg.info;
      });
      stream.on("error", reject);
      stream.on("end", () => resolve({ data: Buffer.concat(chunks), info }));
    });
  }

  restore(data: Buffer, chunkBytes = 64 * 1024): Promise<pb.RestoreResponse> {
    return new Promise((resolve, reject) => {
      const call = this.client.restore(
        { deadline: Date.now() + 60_000 },
        (err: ServiceError | null, res: pb.RestoreResponse) => (err ? reject(err) : resolve(res)),
      );
      for (let offset = 0; offset < data.length; offset += chunkBytes) {
        call.write({ data: data.subarray(offset, offset + chunkBytes) });
      }
      call.end();
    });
  }

  close(): void {
    this.client.close();
  }
}

export const Consistency = pb.Consistency;
export const BackupFormat = pb.BackupFormat;
