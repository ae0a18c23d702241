import { type ConnectionOptions, connect } from "node:tls";

/** What an HTTP/2 client sends first: the connection preface and an empty SETTINGS frame. */
export const HTTP2_OPENING = Buffer.concat([
  Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
  Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]),
]);

/**
 * Whether a TLS server takes a connection made with these options (a client certificate, a cipher
 * list, …): after the handshake the client opens HTTP/2, and a server that accepted the connection
 * answers with its SETTINGS. A refused handshake, or a connection closed before any answer, is false.
 */
export function h2OverTlsAnswers(options: ConnectionOptions): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", servername: "localhost", ALPNProtocols: ["h2"], ...options });
    socket.on("secureConnect", () => socket.write(HTTP2_OPENING));
    socket.once("data", () => {
      socket.destroy();
      resolve(true);
    });
    socket.on("error", () => resolve(false));
    socket.on("close", () => resolve(false));
  });
}
