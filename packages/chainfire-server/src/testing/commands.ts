// Helpers that build encoded MvccCommands and apply entries, shared by the store and service tests.
import { command } from "@photoncloud/chainfire-api";
import type { ApplyEntry } from "@photoncloud/raft";

export function encodeCommand(cmd: command.MvccCommand): Uint8Array {
  return command.MvccCommand.encode(cmd).finish();
}

export function decodeResult(bytes: Uint8Array): command.MvccResult {
  return command.MvccResult.decode(bytes);
}

/** Numbers entries from `firstIndex`, stamping a fixed time and a seed derived from the index. */
export function entriesFor(cmds: command.MvccCommand[], firstIndex: bigint, timestampMs = 0): ApplyEntry[] {
  return cmds.map((cmd, i) => ({
    index: firstIndex + BigInt(i),
    term: 1n,
    timestampMs,
    seed: 0x1234_5678_9abc_def0n + firstIndex + BigInt(i),
    command: encodeCommand(cmd),
  }));
}
