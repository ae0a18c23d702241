// How a member joining a running cluster for the first time learns the membership: it asks the
// members listed in --initial-cluster for the member list, as etcd's joining members do. From it, a
// member added through etcd's MemberAdd (which carries peer URLs, not a name) takes its own ID (the
// entry with its peer URL), and every joiner takes the others' IDs: --initial-cluster gives names,
// whose derived IDs are wrong for members added by peer URL or with --member-id. Members restarting
// from their own log skip this.
import { type ChannelCredentials, Metadata } from "@grpc/grpc-js";
import { chainfirev1 } from "@photoncloud/chainfire-api";
import { type Logger, parseUrl } from "@photoncloud/daemon";

export interface JoinLookup {
  readonly ownPeerUrls: readonly string[];
  readonly otherPeerUrls: readonly string[];
  /** The member's peer client credentials for a peer URL (its TLS and certificate checks). */
  readonly credentialsFor: (url: string) => ChannelCredentials;
  readonly deadlineMs: number;
}

export interface DiscoveredCluster {
  /** The cluster's members as the first peer to answer listed them. */
  readonly members: chainfirev1.Member[];
  /** The entry with this member's peer URL, if the cluster has one. */
  readonly own: chainfirev1.Member | undefined;
}

/**
 * The member list from the first listed peer that answers; undefined when none does within
 * `waitMs`. Asked again (every peer, in turn) until one lists this member's peer URL or `waitMs` has
 * passed: a peer that has not applied this member's addition yet lists the cluster without it.
 */
export async function discoverCluster(
  lookup: JoinLookup,
  logger: Logger,
  waitMs = 0,
): Promise<DiscoveredCluster | undefined> {
  const own = new Set(lookup.ownPeerUrls.map((u) => parseUrl(u).href));
  const until = performance.now() + waitMs;
  let answered: DiscoveredCluster | undefined;
  for (;;) {
    for (const url of lookup.otherPeerUrls) {
      try {
        const members = await listMembers(url, lookup);
        const mine = members.find((m) => m.peerUrls.some((u) => own.has(parseUrl(u).href)));
        answered = { members, own: mine };
        if (mine !== undefined) {
          logger.info({ memberId: mine.id.toString(16), via: url }, "found this member's ID by its peer URL");
          return answered;
        }
      } catch (err) {
        logger.debug({ err, url }, "peer did not answer the member list");
      }
    }
    if (performance.now() >= until) return answered;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/**
 * etcd's check before a member bootstraps a new cluster: a peer in --initial-cluster that lists this
 * member's ID with client URLs saw it run (a member publishes them once it runs), so this start is
 * one that lost the data dir it ran with; bootstrapping again would forget its term and vote. Peers
 * that do not answer within the deadline count as a cluster not running yet (etcd waits its
 * bootstrap timeout, 1 s). Returns the first peer URL that lists it so.
 */
export async function bootstrappedAt(
  lookup: Pick<JoinLookup, "credentialsFor" | "deadlineMs" | "otherPeerUrls">,
  ownId: bigint,
): Promise<string | undefined> {
  const seen = await Promise.all(
    lookup.otherPeerUrls.map((url) =>
      listMembers(url, lookup).then(
        (members) => members.some((m) => m.id === ownId && m.clientUrls.length > 0),
        () => false,
      ),
    ),
  );
  return lookup.otherPeerUrls[seen.indexOf(true)];
}

/** A peer's view of the membership: its member list and whether it knows a leader. */
export function listMembers(
  url: string,
  lookup: Pick<JoinLookup, "credentialsFor" | "deadlineMs">,
): Promise<chainfirev1.Member[]> {
  return memberListOf(url, lookup).then((res) => res.members);
}

export function memberListOf(
  url: string,
  lookup: Pick<JoinLookup, "credentialsFor" | "deadlineMs">,
): Promise<chainfirev1.MemberListResponse> {
  const parsed = parseUrl(url);
  const client = new chainfirev1.ClusterClient(`${parsed.host}:${parsed.port}`, lookup.credentialsFor(url));
  return new Promise<chainfirev1.MemberListResponse>((resolve, reject) => {
    client.memberList({}, new Metadata(), { deadline: Date.now() + lookup.deadlineMs }, (err, res) =>
      err ? reject(err) : resolve(res),
    );
  }).finally(() => client.close());
}
