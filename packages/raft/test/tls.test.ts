// Proves peer traffic over TLS: three members started with https:// peer URLs and the --peer-*
// flags (mutual TLS) elect a leader and replicate; a peer presenting no certificate, or one
// signed by another CA, delivers nothing to an mTLS member, whether grpc-js or the kit's HTTP/2 client carries it.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { makeMessage } from "../src/core/messages.js";
import { type Message, MessageType } from "../src/core/types.js";
import { membershipHandlers } from "../src/member/membership-handlers.js";
import { peerClientTls } from "../src/member/start-member.js";
import { GrpcTransport } from "../src/transport/grpc-transport.js";
import { until } from "./helpers.js";
import { freePorts, leaderOf, memberConfig, startTestMember, type TestMember } from "./member-kit.js";
import { createTestCa } from "@photoncloud/daemon/testing";
import { writePems } from "./pki.js";

let members: TestMember[] = [];
// RSA key generation is slow on a loaded machine: one PKI serves both tests.
let pkiCache: ReturnType<typeof makePki> | undefined;
function makePki() {
  const ca = createTestCa("peer CA");
  const leaves = Object.fromEntries(["t1", "t2", "t3"].map((n) => [n, ca.issue(n)]));
  return { ca, leaves, stranger: createTestCa("other CA").issue("stranger") };
}
const pki = () => (pkiCache ??= makePki());
let dir = "";
const cleanups: (() => void)[] = [];

afterEach(async () => {
  for (const m of members) await m.stop();
  members = [];
  for (const c of cleanups.splice(0)) c();
  if (dir !== "") rmSync(dir, { recursive: true, force: true });
});

function tlsFlags(
  base: string,
  name: string,
  peer: number,
  client: number,
  cluster: string,
  pems: Record<string, string>,
) {
  return [
    "--data-dir",
    join(base, name),
    "--listen-peer-urls",
    `https://127.0.0.1:${peer}`,
    "--listen-client-urls",
    `http://127.0.0.1:${client}`,
    "--initial-cluster",
    cluster,
    "--initial-cluster-token",
    "tls-token",
    "--heartbeat-interval",
    "20",
    "--election-timeout",
    "200",
    "--peer-cert-file",
    pems[`${name}.crt`]!,
    "--peer-key-file",
    pems[`${name}.key`]!,
    "--peer-trusted-ca-file",
    pems["ca.crt"]!,
    "--peer-client-cert-auth",
  ];
}

/**
 * A member's Raft listener over TLS presenting `leaf`, asking client certificates of `clientCa`
 * when given; it keeps what it receives.
 */
async function startReceiver(
  leaf: { cert: string; key: string },
  clientCa: string | null,
): Promise<{ received: Message[]; port: number }> {
  const received: Message[] = [];
  const receiver = new GrpcTransport(2n, {
    onMessage: (m) => received.push(m),
    onUnreachable: () => {},
    onSnapshotStatus: () => {},
    onForwardedPropose: () => Promise.reject(new Error("not used")),
  });
  const server = new grpc.Server();
  receiver.register(server);
  const creds = grpc.ServerCredentials.createSsl(
    clientCa === null ? null : Buffer.from(clientCa),
    [{ cert_chain: Buffer.from(leaf.cert), private_key: Buffer.from(leaf.key) }],
    clientCa !== null,
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", creds, (err, p) => (err ? reject(err) : resolve(p))),
  );
  cleanups.push(
    () => server.forceShutdown(),
    () => receiver.stop(),
  );
  return { received, port };
}

/** Member 1's transport dialling the receiver on `port` with `tls`; it notes unreachable peers. */
function startSender(
  port: number,
  tls: ConstructorParameters<typeof GrpcTransport>[2],
): { transport: GrpcTransport; unreachable: bigint[] } {
  const unreachable: bigint[] = [];
  const transport = new GrpcTransport(
    1n,
    {
      onMessage: () => {},
      onUnreachable: (p) => unreachable.push(p),
      onSnapshotStatus: () => {},
      onForwardedPropose: () => Promise.reject(new Error("not used")),
    },
    tls,
  );
  cleanups.push(() => transport.stop());
  transport.setPeer(2n, `https://127.0.0.1:${port}`);
  return { transport, unreachable };
}

describe("peer TLS", () => {
  it("replicates between three members over mutual TLS configured with the --peer-* flags", async () => {
    // Proves startMember serves RaftPeer over TLS and dials https:// peers with the peer certificate.
    dir = mkdtempSync(join(tmpdir(), "raft-tls-"));
    const { ca, leaves } = pki();
    const names = ["t1", "t2", "t3"];
    const files: Record<string, string> = { "ca.crt": ca.cert };
    for (const n of names) {
      files[`${n}.crt`] = leaves[n]!.cert;
      files[`${n}.key`] = leaves[n]!.key;
    }
    mkdirSync(join(dir, "pki"));
    const pems = writePems(join(dir, "pki"), files);
    const ports = await freePorts(6);
    const cluster = names.map((n, i) => `${n}=https://127.0.0.1:${ports[2 * i]}`).join(",");
    members = await Promise.all(
      names.map((n, i) =>
        startTestMember(n, tlsFlags(dir, n, ports[2 * i]!, ports[2 * i + 1]!, cluster, pems)),
      ),
    );
    const leader = await until("leader over TLS", () => leaderOf(members));
    const { index } = await until("proposal", () =>
      leader.member.raft.propose(new TextEncoder().encode("tls")),
    );
    await until("applied everywhere", () => members.every((m) => m.member.raft.node.appliedIndex() >= index));
    const list = await membershipHandlers(leader.member).memberList();
    expect(list.members.map((m) => m.peerUrls[0]?.startsWith("https://"))).toEqual([true, true, true]);
  }, 120_000);

  it.each([
    ["grpc-js", false],
    ["the kit's HTTP/2 client", true],
  ])(
    "delivers nothing from a peer without a certificate or with one from another CA (%s)",
    async (_, kit) => {
      // Proves --peer-client-cert-auth: only certificates chaining to the trusted CA may speak Raft,
      // whichever client carries the batch stream (grpc-js credentials, or the kit's TLS options).
      const { ca, leaves, stranger } = pki();
      const { received, port } = await startReceiver(leaves["t1"]!, ca.cert);

      const caPem = Buffer.from(ca.cert);
      /** A transport dialing the receiver with `identity` (none: no client certificate). */
      const sender = (identity?: { key: string; cert: string }) => {
        const key = identity === undefined ? null : Buffer.from(identity.key);
        const cert = identity === undefined ? null : Buffer.from(identity.cert);
        return startSender(
          port,
          kit
            ? { tlsFor: () => ({ ca: caPem, ...(key && cert ? { key, cert } : {}) }) }
            : { credentials: grpc.credentials.createSsl(caPem, key, cert) },
        );
      };
      const heartbeat = (label: string) =>
        makeMessage({ type: MessageType.Heartbeat, from: 1n, to: 2n, term: 1n, context: Buffer.from(label) });
      // Sent until refused: the kit's client queues while it connects, then reports the failure.
      for (const [label, identity] of [
        ["no-cert", undefined],
        ["wrong-ca", stranger],
      ] as const) {
        const s = sender(identity);
        await until(`${label} refused`, () => {
          s.transport.send([heartbeat(label)]);
          return s.unreachable.length > 0;
        });
      }
      // A correctly signed peer gets through the same listener (the control).
      const good = sender(leaves["t2"]!);
      await until("the trusted peer's message arrives", () => {
        good.transport.send([heartbeat("good")]);
        return received.length > 0;
      });
      expect(new Set(received.map((m) => Buffer.from(m.context).toString()))).toEqual(new Set(["good"]));
    },
    60_000,
  );

  it.each([
    ["grpc-js", false],
    ["the kit's HTTP/2 client", true],
  ])(
    "holds the peer's server certificate to --peer-cert-allowed-cn when dialling (%s)",
    async (_, kit) => {
      // Proves the dialling side of --peer-cert-allowed-cn, as etcd's peer client checks it: a peer
      // whose certificate is of the trusted CA but has another CN gets nothing, while the same
      // listener takes the messages of a member that allows its CN.
      dir = mkdtempSync(join(tmpdir(), "raft-tls-"));
      const { ca, leaves } = pki();
      const pems = writePems(dir, {
        "ca.crt": ca.cert,
        "t2.crt": leaves["t2"]!.cert,
        "t2.key": leaves["t2"]!.key,
      });
      // The listener presents t1's certificate (CN "t1") and asks no client certificate.
      const { received, port } = await startReceiver(leaves["t1"]!, null);
      const warnings: string[] = [];
      const sender = (allowedCn: string) => {
        const config = memberConfig([
          "--name",
          "t2",
          "--data-dir",
          join(dir, "t2"),
          "--listen-peer-urls",
          "https://127.0.0.1:1",
          "--peer-cert-file",
          pems["t2.crt"]!,
          "--peer-key-file",
          pems["t2.key"]!,
          "--peer-trusted-ca-file",
          pems["ca.crt"]!,
          `--peer-cert-allowed-cn=${allowedCn}`,
        ]);
        const { credentialsFor, tlsFor } = peerClientTls(config, (_, m) => warnings.push(m));
        return startSender(port, kit ? { credentialsFor, tlsFor } : { credentialsFor });
      };
      const heartbeat = (label: string) =>
        makeMessage({ type: MessageType.Heartbeat, from: 1n, to: 2n, term: 1n, context: Buffer.from(label) });
      const refusing = sender("t3");
      await until("the peer refused for its CN", () => {
        refusing.transport.send([heartbeat("other-cn")]);
        return refusing.unreachable.length > 0;
      });
      const allowing = sender("t1");
      await until("the allowed peer's message arrives", () => {
        allowing.transport.send([heartbeat("allowed")]);
        return received.length > 0;
      });
      expect(new Set(received.map((m) => Buffer.from(m.context).toString()))).toEqual(new Set(["allowed"]));
      // The operator is told why, once.
      expect(warnings).toEqual([
        `refused a peer's TLS certificate: the peer's certificate (CN "t1") does not pass --peer-cert-allowed-cn=t3`,
      ]);
    },
    60_000,
  );
});
