// Loopback ports: free ephemeral ports for lanes and tests, and a check that the dev cluster's fixed
// ports are free before anything starts (so a clash is reported by port number, not as a crash).
import { createServer } from "node:net";

const handedOut = new Set<number>();

function listenOnce(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port, exclusive: true }, () => {
      const address = server.address();
      const bound = typeof address === "object" && address !== null ? address.port : port;
      server.close(() => resolve(bound));
    });
  });
}

/**
 * `count` distinct free ports. The OS picks them; this process never hands the same one out twice,
 * which matters because a member binds its port only when it starts, possibly much later.
 */
export async function freePorts(count: number): Promise<number[]> {
  const ports: number[] = [];
  for (let attempt = 0; ports.length < count && attempt < count * 20; attempt++) {
    const port = await listenOnce(0);
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    ports.push(port);
  }
  if (ports.length < count) throw new Error(`could not find ${count} free loopback ports`);
  return ports;
}

/** The ports in `ports` that something else already listens on. */
export async function busyPorts(ports: readonly number[]): Promise<number[]> {
  const busy: number[] = [];
  for (const port of ports) {
    try {
      await listenOnce(port);
    } catch {
      busy.push(port);
    }
  }
  return busy;
}
