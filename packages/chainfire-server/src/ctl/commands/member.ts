// `member list|add|remove|promote|update` and `leader transfer`, on chainfire.v1.Cluster — the
// operator contract: add upserts an existing ID (promotes a learner, replaces URLs in place).
import type { chainfirev1 } from "@photoncloud/chainfire-api";
import { type Connection, callPrimary } from "../connection.js";
import { badArgument, CtlError } from "../errors.js";
import {
  type CtlIo,
  formatId,
  formatId16,
  type OutputFormat,
  parseHexId,
  renderTable,
  toJson,
} from "../format.js";

type Member = chainfirev1.Member;

/**
 * etcdctl's JSON for the member commands: etcd's MemberListResponse (and the add, remove, update
 * and promote responses) as Go encodes them: pb.Member's names (`ID`, `peerURLs`, `clientURLs`,
 * `isLearner`), and empty or zero fields left out (omitempty).
 */
function etcdJson(res: {
  header?: chainfirev1.Header | undefined;
  member?: Member | undefined;
  members: readonly Member[];
}): string {
  const h = res.header;
  const nonZero = (k: string, v: bigint | undefined) => (v === undefined || v === 0n ? {} : { [k]: v });
  const member = (m: Member) => ({
    ID: m.id,
    ...(m.name === "" ? {} : { name: m.name }),
    ...(m.peerUrls.length === 0 ? {} : { peerURLs: m.peerUrls }),
    ...(m.clientUrls.length === 0 ? {} : { clientURLs: m.clientUrls }),
    ...(m.isLearner ? { isLearner: true } : {}),
  });
  return toJson(
    {
      header: {
        ...nonZero("cluster_id", h?.clusterId),
        ...nonZero("member_id", h?.memberId),
        ...nonZero("raft_term", h?.raftTerm),
      },
      ...(res.member === undefined ? {} : { member: member(res.member) }),
      members: res.members.map(member),
    },
    ETCD_MEMBER_FIELDS,
  );
}

const ETCD_MEMBER_FIELDS: ReadonlySet<string> = new Set(["peerURLs", "clientURLs", "isLearner"]);

export async function listMembers(conn: Connection): Promise<chainfirev1.MemberListResponse> {
  return callPrimary(conn, (c) => c.operator.memberList.bind(c.operator), {});
}

function memberRow(m: Member): string[] {
  return [
    formatId(m.id),
    m.name === "" ? "unstarted" : "started",
    m.name,
    m.peerUrls.join(","),
    m.clientUrls.join(","),
    String(m.isLearner),
  ];
}

export function printMembers(io: CtlIo, format: OutputFormat, res: chainfirev1.MemberListResponse): void {
  if (format === "json") {
    io.out(etcdJson(res));
    return;
  }
  const rows = res.members.map(memberRow);
  if (format === "table") {
    io.out(renderTable(["ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"], rows));
  } else {
    for (const row of rows) io.out(row.join(", "));
  }
}

/** Finds a member by name first, then by hex ID, so `leader transfer n2` and `... 8e9e...` both work. */
export function findMember(members: readonly Member[], target: string): Member {
  const byName = members.find((m) => m.name === target);
  if (byName) return byName;
  let id: bigint;
  try {
    id = parseHexId(target, "member");
  } catch {
    throw new CtlError("MEMBER_NOT_FOUND", `no member named or with ID "${target}" (see \`member list\`)`);
  }
  const byId = members.find((m) => m.id === id);
  if (!byId)
    throw new CtlError(
      "MEMBER_NOT_FOUND",
      `member ${formatId(id)} is not in the cluster (see \`member list\`)`,
    );
  return byId;
}

export function parseUrls(text: string | undefined, flag: string): string[] {
  if (text === undefined || text === "") return [];
  return text.split(",").map((url) => {
    const trimmed = url.trim();
    let parsed: URL;
    try {
      parsed = new URL(trimmed);
    } catch {
      throw badArgument(`${flag}: "${trimmed}" is not a URL (e.g. http://127.0.0.1:2380)`);
    }
    if (!["http:", "https:"].includes(parsed.protocol) || parsed.port === "") {
      throw badArgument(`${flag}: "${trimmed}" needs http(s)://host:port (e.g. http://127.0.0.1:2380)`);
    }
    return trimmed;
  });
}

async function upsert(
  conn: Connection,
  req: chainfirev1.MemberAddRequest,
): Promise<chainfirev1.MemberAddResponse> {
  return callPrimary(conn, (c) => c.operator.memberAdd.bind(c.operator), req);
}

export interface MemberAddOptions {
  peerUrls?: string;
  clientUrls?: string;
  learner?: boolean;
  id?: string;
}

export async function memberAdd(
  conn: Connection,
  io: CtlIo,
  format: OutputFormat,
  name: string,
  opts: MemberAddOptions,
): Promise<void> {
  const peerUrls = parseUrls(opts.peerUrls, "--peer-urls");
  if (peerUrls.length === 0)
    throw badArgument("member add needs --peer-urls (e.g. --peer-urls=http://127.0.0.1:2380)");
  const req = {
    id: opts.id === undefined ? 0n : parseHexId(opts.id, "--id"),
    name,
    peerUrls,
    clientUrls: parseUrls(opts.clientUrls, "--client-urls"),
    isLearner: opts.learner === true,
  };
  const res = await upsert(conn, req);
  if (format === "json") return io.out(etcdJson(res));
  const id = formatId16(res.member?.id ?? req.id);
  const cluster = formatId16(res.header?.clusterId ?? 0n);
  if (res.updated) return io.out(`Member ${id} (${name}) updated in cluster ${cluster}`);
  // etcdctl's lines, and the environment the new member starts with (chainfire reads ETCD_*).
  io.out(`Member ${id} added to cluster ${cluster}`);
  const initialCluster = res.members
    .filter((m) => m.name !== "" || m.id === res.member?.id)
    .map((m) => `${m.id === res.member?.id ? name : m.name}=${m.peerUrls[0] ?? ""}`)
    .join(",");
  io.out("");
  io.out(`ETCD_NAME=${JSON.stringify(name)}`);
  io.out(`ETCD_INITIAL_CLUSTER=${JSON.stringify(initialCluster)}`);
  io.out(`ETCD_INITIAL_ADVERTISE_PEER_URLS=${JSON.stringify(peerUrls.join(","))}`);
  io.out('ETCD_INITIAL_CLUSTER_STATE="existing"');
}

export async function memberRemove(
  conn: Connection,
  io: CtlIo,
  format: OutputFormat,
  idText: string,
): Promise<void> {
  const id = parseHexId(idText, "member ID");
  const res = await callPrimary(conn, (c) => c.operator.memberRemove.bind(c.operator), { id });
  if (format === "json") return io.out(etcdJson(res));
  io.out(`Member ${formatId16(id)} removed from cluster ${formatId16(res.header?.clusterId ?? 0n)}`);
}

/** Promote = re-add the learner's ID as a voter with its current URLs (the seed's upsert contract). */
export async function memberPromote(
  conn: Connection,
  io: CtlIo,
  format: OutputFormat,
  idText: string,
): Promise<void> {
  const member = findMember((await listMembers(conn)).members, idText);
  if (!member.isLearner)
    throw badArgument(`member ${formatId(member.id)} is already a voter; only learners can be promoted`);
  const res = await upsert(conn, { ...member, isLearner: false });
  if (format === "json") return io.out(etcdJson({ header: res.header, members: res.members }));
  io.out(`Member ${formatId16(member.id)} promoted in cluster ${formatId16(res.header?.clusterId ?? 0n)}`);
}

export async function memberUpdate(
  conn: Connection,
  io: CtlIo,
  format: OutputFormat,
  idText: string,
  opts: { peerUrls?: string; clientUrls?: string },
): Promise<void> {
  const peerUrls = parseUrls(opts.peerUrls, "--peer-urls");
  const clientUrls = parseUrls(opts.clientUrls, "--client-urls");
  if (peerUrls.length === 0 && clientUrls.length === 0) {
    throw badArgument("member update needs --peer-urls and/or --client-urls");
  }
  const member = findMember((await listMembers(conn)).members, idText);
  const res = await upsert(conn, {
    ...member,
    peerUrls: peerUrls.length > 0 ? peerUrls : member.peerUrls,
    clientUrls: clientUrls.length > 0 ? clientUrls : member.clientUrls,
  });
  if (format === "json") return io.out(etcdJson({ header: res.header, members: res.members }));
  io.out(`Member ${formatId16(member.id)} updated in cluster ${formatId16(res.header?.clusterId ?? 0n)}`);
}

export async function leaderTransfer(
  conn: Connection,
  io: CtlIo,
  format: OutputFormat,
  target: string,
): Promise<void> {
  const member = findMember((await listMembers(conn)).members, target);
  if (member.isLearner)
    throw badArgument(`member ${formatId(member.id)} is a learner; leadership can only go to a voter`);
  const res = await callPrimary(conn, (c) => c.operator.leaderTransfer.bind(c.operator), {
    targetId: member.id,
    targetName: "",
  });
  if (format === "json") return io.out(toJson(res));
  io.out(`Leadership transferred to ${formatId(member.id)} (${member.name})`);
}
