// flaredbctl's cluster and maintenance commands: members, endpoint status, leader transfer,
// maintenance windows and the schema history.

import { readFileSync, statSync } from "node:fs";
import type { Member, StatusResponse } from "../gen/flaredb/v1/cluster.js";
import type { MaintenanceState, SchemaChange } from "../gen/flaredb/v1/flaredb.js";
import { verifyBackup } from "../sql/backup.js";
import { type FlareDbConnection, toCallError } from "./client.js";
import { formatBytes, hexId, parseMemberId, renderTable, toJson } from "./format.js";
import type { OutputFormat } from "./operations.js";

export function renderMembers(members: readonly Member[], format: OutputFormat): string {
  if (format === "json") return toJson({ members: members.map((m) => ({ ...m, id: hexId(m.id) })) });
  return renderTable(
    ["ID", "NAME", "PEER URLS", "CLIENT URLS", "IS LEARNER"],
    members.map((m) => [
      hexId(m.id),
      m.name,
      m.peerUrls.join(","),
      m.clientUrls.join(","),
      String(m.isLearner),
    ]),
  );
}

export async function memberList(conn: FlareDbConnection): Promise<Member[]> {
  const r = await conn.unary((e) => ({ client: e.cluster, fn: e.cluster.memberList }), {});
  return r.members;
}

export interface MemberAddOptions {
  peerUrls: string;
  clientUrls?: string;
  learner?: boolean;
  id?: string;
}

const urlList = (text: string | undefined) =>
  (text ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");

export async function memberAdd(conn: FlareDbConnection, name: string, o: MemberAddOptions) {
  return conn.unary((e) => ({ client: e.cluster, fn: e.cluster.memberAdd }), {
    id: o.id === undefined ? 0n : parseMemberId(o.id),
    name,
    peerUrls: urlList(o.peerUrls),
    clientUrls: urlList(o.clientUrls),
    isLearner: o.learner === true,
  });
}

/** Re-adds an existing member with changes (promotion or new URLs): the upsert of MemberAdd. */
export async function memberUpsert(
  conn: FlareDbConnection,
  idText: string,
  change: { promote?: boolean; peerUrls?: string; clientUrls?: string },
) {
  const id = parseMemberId(idText);
  const current = (await memberList(conn)).find((m) => m.id === id);
  if (current === undefined) {
    throw new Error(`member ${hexId(id)} is not in the cluster; see \`flaredbctl member list\``);
  }
  return conn.unary((e) => ({ client: e.cluster, fn: e.cluster.memberAdd }), {
    id,
    name: current.name,
    peerUrls: change.peerUrls ? urlList(change.peerUrls) : current.peerUrls,
    clientUrls: change.clientUrls ? urlList(change.clientUrls) : current.clientUrls,
    isLearner: change.promote ? false : current.isLearner,
  });
}

export async function memberRemove(conn: FlareDbConnection, idText: string) {
  return conn.unary((e) => ({ client: e.cluster, fn: e.cluster.memberRemove }), {
    id: parseMemberId(idText),
  });
}

/** Status of every endpoint (not only the first reachable): one row each, errors included. */
export async function endpointStatus(conn: FlareDbConnection, format: OutputFormat): Promise<string> {
  const rows = await Promise.all(
    conn.each().map(async (e) => {
      try {
        const s: StatusResponse = await conn.unaryAt(
          e,
          (x) => ({ client: x.cluster, fn: x.cluster.status }),
          {},
        );
        return { endpoint: e.url, status: s };
      } catch (err) {
        return { endpoint: e.url, error: toCallError(err, e.url).message };
      }
    }),
  );
  if (format === "json") {
    return toJson(
      rows.map((r) =>
        r.status
          ? {
              endpoint: r.endpoint,
              id: hexId(r.status.header?.memberId ?? 0n),
              leader: hexId(r.status.header?.leaderId ?? 0n),
              isLeader: r.status.header?.memberId === r.status.header?.leaderId,
              ...r.status,
            }
          : r,
      ),
    );
  }
  return renderTable(
    [
      "ENDPOINT",
      "ID",
      "VERSION",
      "DB SIZE",
      "IS LEADER",
      "IS LEARNER",
      "RAFT TERM",
      "RAFT INDEX",
      "APPLIED",
      "ERROR",
    ],
    rows.map((r) => {
      const s = r.status;
      const h = s?.header;
      if (s === undefined || h === undefined)
        return [r.endpoint, "", "", "", "", "", "", "", "", r.error ?? ""];
      return [
        r.endpoint,
        hexId(h.memberId),
        s.version,
        formatBytes(Number(s.dbSizeBytes)),
        String(h.memberId === h.leaderId),
        String(s.isLearner),
        String(h.raftTerm),
        String(s.raftIndex),
        String(s.raftAppliedIndex),
        "",
      ];
    }),
  );
}

/** Transfers leadership to a member given by hex ID or by name. */
export async function leaderTransfer(conn: FlareDbConnection, target: string) {
  const members = await memberList(conn);
  const byName = members.find((m) => m.name === target);
  let id: bigint;
  if (byName !== undefined) id = byName.id;
  else {
    try {
      id = parseMemberId(target);
    } catch {
      throw new Error(`"${target}" is neither a member name nor a member ID; see \`flaredbctl member list\``);
    }
  }
  return conn.unary((e) => ({ client: e.cluster, fn: e.cluster.leaderTransfer }), {
    targetId: id,
    targetName: "",
  });
}

/** Opens a maintenance window against the backup in `file` (verified locally first). */
export async function maintenanceBegin(conn: FlareDbConnection, file: string, reason: string) {
  statSync(file);
  const verified = verifyBackup(readFileSync(file));
  return conn.unary((e) => ({ client: e.db, fn: e.db.maintenanceBegin }), {
    backupAppliedIndex: verified.appliedIndex,
    backupContentSha256: verified.contentSha256,
    reason,
  });
}

export async function maintenanceEnd(conn: FlareDbConnection) {
  return conn.unary((e) => ({ client: e.db, fn: e.db.maintenanceEnd }), {});
}

export async function maintenanceStatus(conn: FlareDbConnection) {
  return conn.unary((e) => ({ client: e.db, fn: e.db.maintenanceStatus }), {});
}

export function renderMaintenance(state: MaintenanceState | undefined, format: OutputFormat): string {
  if (format === "json") return toJson(state ?? { open: false });
  if (state === undefined || !state.open) return "maintenance window: closed";
  return [
    "maintenance window: OPEN (destructive DDL is accepted)",
    `  opened at index ${state.openedAtIndex}, ${new Date(Number(state.openedAtMs)).toISOString()}`,
    `  against backup at index ${state.backupAppliedIndex} (content sha256 ${state.backupContentSha256})`,
    state.reason ? `  reason: ${state.reason}` : "",
  ]
    .filter((l) => l !== "")
    .join("\n");
}

export async function schemaHistory(conn: FlareDbConnection, afterIndex: bigint, limit: number) {
  const r = await conn.unary((e) => ({ client: e.db, fn: e.db.schemaHistory }), { afterIndex, limit });
  return r.changes;
}

export function renderHistory(changes: readonly SchemaChange[], format: OutputFormat): string {
  if (format === "json") return toJson({ changes });
  return renderTable(
    ["RAFT INDEX", "APPLIED AT", "KIND", "MAINTENANCE", "DESTRUCTIVE", "STATEMENT"],
    changes.map((c) => [
      String(c.raftIndex),
      new Date(Number(c.appliedAtMs)).toISOString(),
      c.kind,
      String(c.maintenance),
      String(c.destructive),
      c.statement.replace(/\s+/g, " ").slice(0, 80),
    ]),
  );
}
