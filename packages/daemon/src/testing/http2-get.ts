import type { ClientHttp2Session } from "node:http2";

/** One HTTP/2 GET on `session`: the status and the body as text. */
export function http2Get(
  session: ClientHttp2Session,
  path: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ":path": path, ":method": "GET" });
    let status = 0;
    let body = "";
    req.on("response", (headers) => {
      status = Number(headers[":status"]);
    });
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => {
      body += chunk;
    });
    req.on("end", () => resolve({ status, body }));
    req.on("error", reject);
    req.end();
  });
}
