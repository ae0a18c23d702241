// Loopback ports for tests that start daemons. Asking the kernel for port 0 and closing the socket
// hands out a port from the ephemeral range, which the kernel may give to any outgoing connection
// (a gRPC client dialling a peer, say) before the daemon binds it: a rare EADDRINUSE at start-up.
// These ports come from below that range instead, at random, are checked free by binding them, and
// are never handed out twice by one process.
import { readFileSync } from "node:fs";
import { createServer } from "node:net";

const handedOut = new Set<number>();
const LOW = 10_000;

/** The first port of the kernel's ephemeral range (Linux), or the common default. */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > LOW + 1000 ? low : 32_768;
  } catch {
    return 32_768;
  }
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen({ host: "127.0.0.1", port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/**
 * The part of the range this process draws from. Test files run in parallel worker processes, each
 * with its own record of ports handed out; a port one of them had checked free and not yet bound
 * could be handed out by another (a rare EADDRINUSE seen in CI). Under vitest each worker
 * (VITEST_POOL_ID 1, 2, ...) takes its own eighth of the range, so no two hand out the same port.
 */
function slice(low: number, high: number): { low: number; high: number } {
  const pool = Number(process.env.VITEST_POOL_ID);
  if (!Number.isInteger(pool) || pool < 1) return { low, high };
  const size = Math.floor((high - low) / SLICES);
  const start = low + ((pool - 1) % SLICES) * size;
  return { low: start, high: start + size };
}

const SLICES = 8;

/** A free loopback port outside the ephemeral range, not handed out before by this process. */
export async function freePort(): Promise<number> {
  const { low, high } = slice(LOW, Math.min(ephemeralLow(), 20_000));
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = low + Math.floor(Math.random() * (high - low));
    if (handedOut.has(port)) continue;
    if (await bindable(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`no free loopback port found in ${low}-${high - 1}`);
}
