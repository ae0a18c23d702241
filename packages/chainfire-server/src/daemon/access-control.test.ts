import type { IncomingMessage, ServerResponse } from "node:http";
import { createLogger } from "@photoncloud/daemon";
import { describe, expect, it } from "vitest";
import { accessControl, requestHostname } from "./access-control.js";

const logger = createLogger({ name: "test", level: "silent" });

/** A request with these headers, and a response that records what the hook did to it. */
function exchange(headers: Record<string, string>, method = "GET") {
  const req = { headers, method } as unknown as IncomingMessage;
  const seen = { status: 0, headers: {} as Record<string, string>, ended: false };
  const res = {
    setHeader: (name: string, value: string) => {
      seen.headers[name] = value;
    },
    writeHead: (status: number, extra: Record<string, string> = {}) => {
      seen.status = status;
      Object.assign(seen.headers, extra);
    },
    end: () => {
      seen.ended = true;
    },
  } as unknown as ServerResponse;
  return { req, res, seen };
}

describe("the client URLs' access control (etcd's --cors and --host-whitelist)", () => {
  it("reads the hostname a request names, without its port", () => {
    // Proves the comparison is on hostnames, as etcd's, for names, IPv4 and IPv6 (bracketed or bare).
    const host = (h: string) => requestHostname({ headers: { host: h } } as unknown as IncomingMessage);
    expect([
      host("localhost:2379"),
      host("example.com"),
      host("[::1]:2379"),
      host("::1"),
      host("10.0.0.1:1"),
    ]).toEqual(["localhost", "example.com", "::1", "::1", "10.0.0.1"]);
    expect(
      requestHostname({ headers: { ":authority": "h2.example:443" } } as unknown as IncomingMessage),
    ).toBe("h2.example");
  });

  it("refuses a plain-HTTP request for a host outside the list with 421, and lets a TLS one through", () => {
    // Proves the DNS-rebinding guard: only the listed hosts over plain HTTP; any host over TLS.
    const check = accessControl({ cors: ["*"], hostWhitelist: ["localhost"], logger });
    const refused = exchange({ host: "evil.example:2379" });
    expect(check(refused.req, refused.res, false)).toBe(false);
    expect([refused.seen.status, refused.seen.ended]).toEqual([421, true]);
    const listed = exchange({ host: "localhost:2379" });
    expect(check(listed.req, listed.res, false)).toBe(true);
    const overTls = exchange({ host: "evil.example:2379" });
    expect(check(overTls.req, overTls.res, true)).toBe(true);
    const open = accessControl({ cors: ["*"], hostWhitelist: [], logger });
    const anyHost = exchange({ host: "evil.example" });
    expect(open(anyHost.req, anyHost.res, false)).toBe(true);
  });

  it("names only a listed origin in CORS headers, or * when all are allowed, and answers OPTIONS itself", () => {
    // Proves etcd's CORS: the listed origin is echoed, another gets no header, "*" allows all; a
    // preflight is answered 200 before any route.
    const check = accessControl({ cors: ["http://good.example:8080"], hostWhitelist: ["*"], logger });
    const good = exchange({ host: "x", origin: "http://good.example:8080" });
    expect(check(good.req, good.res, false)).toBe(true);
    expect(good.seen.headers["access-control-allow-origin"]).toBe("http://good.example:8080");
    const evil = exchange({ host: "x", origin: "http://evil.example:8080" });
    expect(check(evil.req, evil.res, false)).toBe(true);
    expect(evil.seen.headers["access-control-allow-origin"]).toBeUndefined();
    const preflight = exchange({ host: "x", origin: "http://good.example:8080" }, "OPTIONS");
    expect(check(preflight.req, preflight.res, false)).toBe(false);
    expect([preflight.seen.status, preflight.seen.ended]).toEqual([200, true]);
    const all = accessControl({ cors: ["*"], hostWhitelist: ["*"], logger });
    const any = exchange({ host: "x" });
    all(any.req, any.res, false);
    expect(any.seen.headers["access-control-allow-origin"]).toBe("*");
  });
});
