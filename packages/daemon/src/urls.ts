// Listen and advertise URL lists in etcd's form: `http://127.0.0.1:2379,https://10.0.0.1:2379`.
// Only scheme://host:port is meaningful for a listener; anything else (a path, credentials, a
// query, a missing port) is refused rather than silently ignored.

import { isIP } from "node:net";

export type UrlScheme = "http" | "https";

/** One validated URL. `host` has no IPv6 brackets; `port` may be 0 (any free port) for listeners. */
export interface DaemonUrl {
  readonly scheme: UrlScheme;
  readonly host: string;
  readonly port: number;
  /** True for https:// — the listener must use TLS. */
  readonly tls: boolean;
  /** Normalised form, `scheme://host:port` (IPv6 in brackets). */
  readonly href: string;
}

const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** Why `text` is not a usable URL, or undefined when it is. */
function urlProblem(text: string, url: URL | undefined): string | undefined {
  if (!/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(text)) return "has no scheme (start it with http:// or https://)";
  if (url === undefined) return "is not a URL";
  const scheme = url.protocol.slice(0, -1);
  if (scheme !== "http" && scheme !== "https") return `has scheme "${scheme}", expected http or https`;
  if (url.username !== "" || url.password !== "") return "must not contain credentials";
  if (url.search !== "" || url.hash !== "") return "must not contain a query or fragment";
  if (url.pathname !== "/" && url.pathname !== "") return `must not contain a path ("${url.pathname}")`;
  if (text.endsWith("/")) return "must not end with /";
  if (url.hostname === "") return "has no host";
  // WHATWG URL drops a port equal to the scheme default; look at the text to tell "no port" apart.
  if (url.port === "" && !/:\d+$/.test(text)) return "has no port";
  return undefined;
}

function defaultPortOf(scheme: UrlScheme): number {
  return scheme === "https" ? 443 : 80;
}

/** Hostname without IPv6 brackets; undefined if it is neither an IP address nor a DNS name. */
function hostOf(url: URL): string | undefined {
  const raw = url.hostname;
  const unbracketed = raw.startsWith("[") && raw.endsWith("]") ? raw.slice(1, -1) : raw;
  if (isIP(unbracketed) !== 0 || HOSTNAME.test(unbracketed)) return unbracketed;
  return undefined;
}

/** `host:port` with IPv6 bracketed, as grpc-js `bindAsync` and clients expect. */
export function hostPort(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Build a DaemonUrl from parts (e.g. to report the port actually bound). */
export function makeUrl(scheme: UrlScheme, host: string, port: number): DaemonUrl {
  return { scheme, host, port, tls: scheme === "https", href: `${scheme}://${hostPort(host, port)}` };
}

/**
 * Parse one URL; throws an Error whose message is `"<text>" <problem> (expected scheme://host:port,
 * e.g. http://127.0.0.1:2379)`. Callers add the option name (see parseUrlList).
 */
export function parseUrl(text: string): DaemonUrl {
  const trimmed = text.trim();
  let url: URL | undefined;
  try {
    url = new URL(trimmed);
  } catch {
    url = undefined;
  }
  const problem = urlProblem(trimmed, url);
  const host = url === undefined ? undefined : hostOf(url);
  if (problem !== undefined || url === undefined || host === undefined) {
    const why = problem ?? "has an invalid host";
    throw new Error(`"${trimmed}" ${why} (expected scheme://host:port, e.g. http://127.0.0.1:2379)`);
  }
  const scheme = url.protocol.slice(0, -1) as UrlScheme;
  const port = url.port === "" ? defaultPortOf(scheme) : Number(url.port);
  return makeUrl(scheme, host, port);
}

/** Parse a comma-separated list (or an array) of URLs; refuses an empty list and duplicates. */
export function parseUrlList(input: string | readonly string[]): DaemonUrl[] {
  const parts = (typeof input === "string" ? input.split(",") : input.flatMap((s) => s.split(",")))
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (parts.length === 0) throw new Error("is empty (expected at least one URL, e.g. http://127.0.0.1:2379)");
  const urls = parts.map(parseUrl);
  const seen = new Set<string>();
  for (const u of urls) {
    if (seen.has(u.href)) throw new Error(`lists ${u.href} twice`);
    seen.add(u.href);
  }
  return urls;
}

/** The grpc-js bind address of a listen URL (`127.0.0.1:2379`, `[::1]:0`). */
export function grpcBindAddress(url: DaemonUrl): string {
  return hostPort(url.host, url.port);
}
