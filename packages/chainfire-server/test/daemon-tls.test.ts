// Proves TLS and mTLS on client and peer URLs: a 3-member cluster on https:// URLs with client
// certificates required on both; writes and reads through followers, membership relays and lease
// keep-alive relays all cross TLS; clients without a certificate, or with one from another CA, are refused.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import http2 from "node:http2";
import type { ConnectionOptions } from "node:tls";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { chainfirev1, etcd } from "@photoncloud/chainfire-api";
import { h2OverTlsAnswers, http2Get } from "@photoncloud/daemon/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  call,
  runDaemonToExit,
  DaemonCluster,
  type Member,
  put,
  readPrefix,
  until,
} from "./support/daemon-cluster.js";
import { testCa } from "./support/test-pki.js";

const pkiDir = mkdtempSync(join(tmpdir(), "chainfire-pki-"));
const ca = testCa(pkiDir, "cluster");
const rogue = testCa(pkiDir, "rogue");
const cluster = new DaemonCluster({
  token: "tls-test",
  tls: { caFile: ca.caFile, member: ca.issue("member"), client: ca.issue("operator") },
});
let members: Member[];

beforeAll(async () => {
  const names = ["t1", "t2", "t3"];
  members = await Promise.all(names.map((n) => cluster.allocate(n)));
  const initial = cluster.initialCluster(names);
  // Plain-HTTP requests may name only localhost (etcd's --host-whitelist): every request here is
  // TLS, which the list does not apply to, whatever host it names (127.0.0.1 below).
  await Promise.all(
    names.map((n) =>
      cluster.start(n, {
        initialCluster: initial,
        // Members present certificates with CN "member" to each other; TLS 1.2 clients get one suite.
        extraFlags: [
          "--host-whitelist=localhost",
          "--peer-cert-allowed-cn=member",
          "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        ],
      }),
    ),
  );
}, 180_000);

afterAll(async () => {
  await cluster.close();
  rmSync(pkiDir, { recursive: true, force: true });
});

describe("TLS and mTLS on client and peer URLs", { timeout: 150_000 }, () => {
  it("serves writes, reads, relays and leader transfer across members over TLS", async () => {
    // Proves every member-to-member path works with https:// peer and client URLs and mTLS.
    const leaderId = await cluster.leaderId();
    const leader = await cluster.memberNamed(leaderId);
    const [f1, f2] = members.filter((m) => m !== leader);
    await until(() => put(f1!, "tls/a", "1", 3000).then(() => true), "a put through a follower");
    expect((await readPrefix(f2!, "tls/", false)).get("tls/a")).toBe("1");
    const grant = await call<etcd.LeaseGrantResponse>(f1!.clients.lease, "leaseGrant", { TTL: 30n, ID: 0n });
    const keepAlive = f2!.clients.lease.leaseKeepAlive();
    const renewed = new Promise<etcd.LeaseKeepAliveResponse>((resolve, reject) => {
      keepAlive.once("data", resolve);
      keepAlive.once("error", reject);
    });
    await until(async () => {
      const list = await call<chainfirev1.MemberListResponse>(f2!.clients.operator, "memberList", {});
      return list.members.every((m) => m.clientUrls.length > 0 && m.clientUrls[0]!.startsWith("https://"));
    }, "every member to publish its https:// client URL");
    keepAlive.write({ ID: grant.ID });
    expect((await renewed).TTL).toBe(30n);
    keepAlive.end();
    const target = (await cluster.status(f2!)).header!.memberId;
    await call(f1!.clients.operator, "leaderTransfer", { targetId: target, targetName: "" });
    expect(await cluster.leaderId()).toBe(target);
  });

  it("answers /health over https with HTTP/2 and with HTTP/1.1, as etcd's client URLs do", async () => {
    // Proves `curl --cacert … --cert … --key … https://<client-url>/health` works whichever HTTP
    // version curl negotiates (HTTP/2 by default): before, an HTTP/2 request was taken as gRPC. The
    // host whitelist lets both through: each is known to have come over TLS (the HTTP/2 one is
    // forwarded by the front over a Unix socket, with the scheme it set).
    const port = members[0]!.ports.client;
    const operator = ca.issue("health-probe");
    const tls = {
      ca: readFileSync(ca.caFile),
      cert: readFileSync(operator.cert),
      key: readFileSync(operator.key),
    };
    const session = http2.connect(`https://127.0.0.1:${port}`, tls);
    session.on("error", () => {});
    try {
      const answer = await http2Get(session, "/health");
      expect(answer).toEqual({ status: 200, body: '{"health":"true"}' });
    } finally {
      session.close();
    }
    const viaHttp1 = await new Promise<string>((resolve, reject) => {
      const req = https.get({ host: "127.0.0.1", port, path: "/health", ...tls }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => {
          body += d;
        });
        res.on("end", () => resolve(`${res.statusCode} ${body}`));
      });
      req.on("error", reject);
    });
    expect(viaHttp1).toBe('200 {"health":"true"}');
  });

  it("enforces etcd's --peer-cert-allowed-cn and --cipher-suites", async () => {
    // Proves the flags reach both listeners: the members talk to each other (the tests above), but
    // a certificate of the same CA with another CN is refused on the peer port, and a TLS 1.2
    // client without the listed suite is refused on the client port.
    const operator = ca.issue("operator");
    const accepted = (port: number, pem: { cert: string; key: string }, options: ConnectionOptions = {}) =>
      h2OverTlsAnswers({
        port,
        ca: readFileSync(ca.caFile),
        cert: readFileSync(pem.cert),
        key: readFileSync(pem.key),
        ...options,
      });
    const { peer, client } = members[0]!.ports;
    const member = ca.issue("member");
    expect([await accepted(peer, member), await accepted(peer, operator)]).toEqual([true, false]);
    const tls12 = (ciphers: string) => accepted(client, operator, { maxVersion: "TLSv1.2", ciphers });
    expect([await tls12("ECDHE-RSA-AES128-GCM-SHA256"), await tls12("ECDHE-RSA-AES256-GCM-SHA384")]).toEqual([
      true,
      false,
    ]);
  });

  it("refuses to start with --client-cert-allowed-hostname its own --cert-file does not pass", async () => {
    // Proves members cannot shut each other out: they present --cert-file to each other's client
    // URLs, so a name that certificate is not valid for stops the start, saying so.
    const extra = await cluster.allocate("t4");
    const run = await runDaemonToExit([
      ...cluster.flags(extra, { initialCluster: cluster.initialCluster(["t4"]) }),
      "--client-cert-allowed-hostname=other.example",
    ]);
    expect(run.code).not.toBe(0);
    expect(run.stderr + run.stdout).toMatch(
      /--client-cert-allowed-hostname: this member's --cert-file is not valid for "other.example"/,
    );
  });

  it("refuses clients without a certificate or with one from another CA", async () => {
    // Proves --client-cert-auth: the TLS handshake fails, so no request reaches the member.
    const port = members[0]!.ports.client;
    const anonymous = cluster.clientsFor(port, null);
    const stranger = cluster.clientsFor(port, rogue.issue("stranger"));
    try {
      for (const clients of [anonymous, stranger]) {
        await expect(call(clients.maintenance, "status", {}, 3000)).rejects.toMatchObject({ code: 14 });
      }
    } finally {
      anonymous.close();
      stranger.close();
    }
  });
});

describe("TLS on client URLs without client certificates", { timeout: 150_000 }, () => {
  it("relays a follower's lease keep-alive to the leader, trusting the peer CA for members' client URLs", async () => {
    // Proves a follower reaches the leader's https:// client URL when that URL asks for no client
    // certificate (no --trusted-ca-file): members' certificates come from the cluster's CA, given
    // as --peer-trusted-ca-file. The relay used to check them against the system's roots, so every
    // keep-alive sent to a follower failed and leases held through followers expired.
    const open = new DaemonCluster({
      token: "tls-open",
      tls: {
        caFile: ca.caFile,
        member: ca.issue("member"),
        client: ca.issue("operator"),
        clientCertAuth: false,
      },
    });
    try {
      const names = ["o1", "o2"];
      await Promise.all(names.map((n) => open.allocate(n)));
      const initial = open.initialCluster(names);
      const started = await Promise.all(names.map((n) => open.start(n, { initialCluster: initial })));
      const leaderId = await open.leaderId();
      const leader = await open.memberNamed(leaderId);
      const follower = started.find((m) => m !== leader)!;
      await until(async () => {
        const list = await call<chainfirev1.MemberListResponse>(follower.clients.operator, "memberList", {});
        return (
          list.members.length === 2 && list.members.every((m) => m.clientUrls[0]?.startsWith("https://"))
        );
      }, "both members to publish their https:// client URLs");
      const grant = await call<etcd.LeaseGrantResponse>(leader.clients.lease, "leaseGrant", {
        TTL: 30n,
        ID: 0n,
      });
      const keepAlive = follower.clients.lease.leaseKeepAlive();
      const renewed = new Promise<etcd.LeaseKeepAliveResponse>((resolve, reject) => {
        keepAlive.once("data", resolve);
        keepAlive.once("error", reject);
      });
      keepAlive.write({ ID: grant.ID });
      expect((await renewed).TTL).toBe(30n);
      keepAlive.end();
    } finally {
      await open.close();
    }
  });
});
