import { readdirSync, readlinkSync } from "node:fs";

/**
 * The files this process holds open, worker threads' included, as `/proc/self/fd` names them (Linux):
 * for tests that check what a close, a restore or a sync leaves open.
 */
export function openFiles(): string[] {
  const found: string[] = [];
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      found.push(readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      // closed since the listing
    }
  }
  return found;
}
