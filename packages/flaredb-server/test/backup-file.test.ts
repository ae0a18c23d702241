// flaredbctl backup: how the file it writes is made durable.
import { mkdtempSync, readFileSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { FlareDbConnection } from "../src/cli/client.js";
import { backupTo } from "../src/cli/operations.js";
import { BackupFormat, type BackupInfo } from "../src/gen/flaredb/v1/flaredb.js";
import { applySql, cleanupDirs, tempMachine } from "./helpers.js";

/** The file system calls that decide durability, in order: each fsync names what it synced. */
const calls = vi.hoisted(() => [] as string[]);
vi.mock("node:fs", async (importOriginal) => {
  const fs = await importOriginal<typeof import("node:fs")>();
  return {
    ...fs,
    fsyncSync: (fd: number) => {
      calls.push(`fsync ${fs.readlinkSync(`/proc/self/fd/${fd}`)}`);
      fs.fsyncSync(fd);
    },
    renameSync: (from: string, to: string) => {
      calls.push(`rename ${from} -> ${to}`);
      fs.renameSync(from, to);
    },
  };
});

let dir: string;
beforeEach(() => {
  dir = realpathSync(mkdtempSync(join(tmpdir(), "flaredbctl-backup-")));
  calls.length = 0;
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));
afterAll(cleanupDirs);

/** A connection whose Backup streams `bytes` in two messages, the second closing with `info`. */
function serverStreaming(bytes: Buffer, info: BackupInfo): FlareDbConnection {
  const half = bytes.length >> 1;
  return {
    unary: async () => ({ dbSizeBytes: BigInt(bytes.length) }),
    serverStream: async (_open: unknown, onMessage: (m: { data: Buffer; info?: BackupInfo }) => void) => {
      onMessage({ data: bytes.subarray(0, half) });
      onMessage({ data: bytes.subarray(half), info });
    },
  } as unknown as FlareDbConnection;
}

describe("flaredbctl backup", () => {
  it("syncs the file before renaming it into place, and its folder after", async () => {
    // Proves a backup survives a power loss once the command has returned: the content is on disk
    // before the file takes its name, and the name is on disk before the command returns.
    const sm = tempMachine();
    applySql(sm, "CREATE TABLE t (x)", "INSERT INTO t VALUES (1)");
    const { bytes, facts } = sm.backup("sql");
    sm.close();
    const info: BackupInfo = {
      format: BackupFormat.BACKUP_FORMAT_SQL,
      appliedIndex: facts.appliedIndex,
      contentSha256: facts.contentSha256,
      fileSha256: facts.fileSha256,
      sizeBytes: BigInt(bytes.length),
    };
    const file = join(dir, "backup.sql");
    expect(await backupTo(serverStreaming(bytes, info), file, "sql")).toEqual(info);
    expect(calls).toEqual([`fsync ${file}.part`, `rename ${file}.part -> ${file}`, `fsync ${dir}`]);
    expect(readFileSync(file).equals(bytes)).toBe(true);
  });
});
