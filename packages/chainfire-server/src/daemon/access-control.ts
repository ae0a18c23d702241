// etcd's access control for the client URLs' HTTP side (/health, /version, /metrics and the JSON
// gateway): CORS headers from --cors, and --host-whitelist, which refuses plain-HTTP requests
// naming another host (a browser page on a hostile domain resolved to this member, "DNS
// rebinding"). As etcd: a TLS connection is not checked against the host list, an OPTIONS
// request is answered at once, and an empty list or "*" allows everything.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "@photoncloud/daemon";

export interface AccessControlConfig {
  /** Origins a browser may call from (etcd's --cors). */
  readonly cors: readonly string[];
  /** Hosts a plain-HTTP request may name (etcd's --host-whitelist). */
  readonly hostWhitelist: readonly string[];
  readonly logger: Logger;
}

const allowsAll = (list: readonly string[]) => list.length === 0 || list.includes("*");

/** The host a request names, without its port (etcd compares hostnames only). */
export function requestHostname(req: IncomingMessage): string {
  const host = req.headers.host ?? (req.headers[":authority"] as string | undefined) ?? "";
  const bracketed = /^\[([^\]]*)\](?::\d*)?$/.exec(host);
  if (bracketed) return bracketed[1]!;
  const colon = host.lastIndexOf(":");
  // A bare IPv6 address has several colons and no port.
  return colon >= 0 && host.indexOf(":") === colon ? host.slice(0, colon) : host;
}

/** The kit's `beforeRoute` hook: false when the request was answered here. */
export function accessControl(
  config: AccessControlConfig,
): (req: IncomingMessage, res: ServerResponse, secure: boolean) => boolean {
  const anyOrigin = allowsAll(config.cors);
  const origins = new Set(config.cors);
  const anyHost = allowsAll(config.hostWhitelist);
  const hosts = new Set(config.hostWhitelist);
  return (req, res, secure) => {
    if (!secure && !anyHost) {
      const host = requestHostname(req);
      if (!hosts.has(host)) {
        config.logger.warn({ host }, "refused a plain-HTTP request for a host not in --host-whitelist");
        res.writeHead(421, {
          "content-type": "text/plain; charset=utf-8",
          "x-content-type-options": "nosniff",
        });
        res.end(
          `chainfire refused this request: its Host header (${JSON.stringify(host)}) is not in --host-whitelist.\n` +
            `Use TLS (then any host is accepted), set --host-whitelist to "*", or add "${host}" to --host-whitelist.\n`,
        );
        return false;
      }
    }
    const origin = req.headers.origin;
    const allowed = anyOrigin ? "*" : typeof origin === "string" && origins.has(origin) ? origin : undefined;
    if (allowed !== undefined) {
      res.setHeader("access-control-allow-methods", "POST, GET, OPTIONS, PUT, DELETE");
      res.setHeader("access-control-allow-origin", allowed);
      res.setHeader("access-control-allow-headers", "accept, content-type, authorization");
    }
    if (req.method === "OPTIONS") {
      res.writeHead(200);
      res.end();
      return false;
    }
    return true;
  };
}
