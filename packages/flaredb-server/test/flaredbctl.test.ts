// flaredbctl against an in-process flaredb.v1 server (single member): SQL, parameters, transactions,
// output formats, backups, restore, maintenance windows, schema history and the shell.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { Server, ServerCredentials } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFlareDbService } from "../src/api/service.js";
import { runFlaredbctl } from "../src/bin/flaredbctl.js";
import { FlareDbConnection } from "../src/cli/client.js";
import { parseValue, toJson } from "../src/cli/format.js";
import { runShell, statementComplete } from "../src/cli/shell.js";
import { FlareDBServiceService } from "../src/gen/flaredb/v1/flaredb.js";
import type { SqlStateMachine } from "../src/sql/state-machine.js";
import { LocalReplicated } from "../src/testing/local-replicated.js";
import { cleanupDirs, rows, tempMachine } from "./helpers.js";

interface Member {
  sm: SqlStateMachine;
  server: Server;
  endpoint: string;
}

async function startMember(): Promise<Member> {
  const sm = tempMachine();
  const server = new Server();
  server.addService(FlareDBServiceService, createFlareDbService(sm, new LocalReplicated(sm)));
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return { sm, server, endpoint: `127.0.0.1:${port}` };
}

async function ctl(m: Member, ...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runFlaredbctl(["node", "flaredbctl", "--endpoints", m.endpoint, ...args], {
    out: (t) => out.push(t),
    err: (t) => err.push(t),
  });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

let a: Member;
let b: Member;
const dir = mkdtempSync(join(tmpdir(), "flaredbctl-test-"));

beforeAll(async () => {
  a = await startMember();
  b = await startMember();
});

afterAll(async () => {
  for (const m of [a, b]) {
    m.server.forceShutdown();
    m.sm.close();
  }
  cleanupDirs();
  rmSync(dir, { recursive: true, force: true });
});

describe("flaredbctl", () => {
  it("parses parameter values by their look, and quotes force text", () => {
    // Proves the --param grammar: null, int64 (as bigint), double, blob, text, quoted text.
    expect(parseValue("null")).toEqual({ nullValue: true });
    expect(parseValue("9007199254740993")).toEqual({ intValue: 9007199254740993n });
    expect(parseValue("1.5")).toEqual({ realValue: 1.5 });
    expect(parseValue("x'00ff'")).toEqual({ blobValue: Buffer.from([0, 255]) });
    expect(parseValue("'42'")).toEqual({ textValue: "42" });
    expect(parseValue("hello")).toEqual({ textValue: "hello" });
    expect(toJson({ big: 9007199254740993n })).toContain("9007199254740993");
  });

  it("runs writes and reads, binds parameters and prints tables and exact JSON", async () => {
    // Proves `sql`: a script of DDL + writes becomes one Execute, reads come back as rows in both formats.
    const w = await ctl(
      a,
      "sql",
      "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, big INTEGER); INSERT INTO t(name) VALUES ('one')",
    );
    expect(w.code, w.err).toBe(0);
    expect(w.out).toMatch(/1 row affected, last insert id 1/);
    const p = await ctl(
      a,
      "sql",
      "INSERT INTO t(name, big) VALUES (:name, :big)",
      "--param",
      ":name=two",
      "--param",
      ":big=9007199254740993",
    );
    expect(p.code, p.err).toBe(0);
    const table = await ctl(a, "sql", "SELECT id, name FROM t ORDER BY id");
    expect(table.out).toMatch(/│ +1 │ one +│/);
    expect(table.out).toMatch(/\(2 rows, applied index \d+\)/);
    const json = await ctl(a, "-w", "json", "sql", "SELECT big FROM t WHERE id = ?", "--param", "2");
    expect(JSON.parse(json.out)[0].rows).toHaveLength(1);
    expect(json.out).toContain('"big": 9007199254740993');
  });

  it("applies nothing of a failing --tx batch and exits non-zero with the server's message", async () => {
    // Proves `--tx` is all-or-nothing and errors are reported with their stable code.
    const before = rows(a.sm, "SELECT count(*) FROM t")[0]![0];
    const r = await ctl(a, "sql", "--tx", "INSERT INTO t(name) VALUES ('x'); INSERT INTO nope VALUES (1)");
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/FLAREDB_SQL_EXECUTION: statement 1: .*no such table: nope/);
    expect(rows(a.sm, "SELECT count(*) FROM t")[0]![0]).toBe(before);
    const q = await ctl(a, "sql", "--consistency", "strong", "DELETE FROM t");
    expect(q.code).toBe(1);
    expect(q.err).toMatch(/FLAREDB_WRITE_IN_QUERY/);
  });

  it("backs up, refuses a corrupted file before sending it, restores into a fresh member", async () => {
    // Proves backup → restore gives an identical dump, and a damaged file changes nothing.
    for (const format of ["sql", "sqlite"]) {
      const file = join(dir, `b.${format}`);
      const r = await ctl(a, "backup", file, "--format", format);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toMatch(/applied index/i);
      const damaged = Buffer.from(readFileSync(file));
      damaged[Math.floor(damaged.length / 2)]! ^= 0xff;
      writeFileSync(join(dir, "bad"), damaged);
      const bad = await ctl(b, "restore", join(dir, "bad"));
      expect(bad.code).toBe(1);
      expect(bad.err).toMatch(/FLAREDB_BACKUP_CORRUPT/);
      expect(b.sm.isEmpty()).toBe(true);
    }
    const ok = await ctl(b, "restore", join(dir, "b.sqlite"));
    expect(ok.code, ok.err).toBe(0);
    const dumpA = await ctl(a, "backup", join(dir, "a2.sql"));
    const dumpB = await ctl(b, "backup", join(dir, "b2.sql"));
    expect(dumpA.code + dumpB.code).toBe(0);
    // The dump body (between the header lines and the trailer); the target's history also holds
    // the RESTORE line itself.
    const body = (f: string) =>
      readFileSync(f, "utf8")
        .split("\n")
        .slice(2, -2)
        .filter((l) => !/INSERT INTO "_flaredb_schema_history".*'RESTORE'/.test(l))
        .join("\n");
    expect(body(join(dir, "b2.sql"))).toContain("CREATE TABLE t");
    expect(body(join(dir, "b2.sql"))).toBe(body(join(dir, "a2.sql")));
    const history = await ctl(b, "schema", "history");
    expect(history.out).toMatch(/RESTORE/);
  });

  it("refuses destructive DDL online and accepts it inside a maintenance window", async () => {
    // Proves the maintenance flow from the command line: begin against a fresh backup, DROP, end.
    const refused = await ctl(a, "sql", "DROP TABLE t");
    expect(refused.code).toBe(1);
    expect(refused.out + refused.err).toMatch(/FLAREDB_SCHEMA_DESTRUCTIVE_DDL/);
    const file = join(dir, "fresh.sql");
    expect((await ctl(a, "backup", file)).code).toBe(0);
    const begin = await ctl(a, "maintenance", "begin", "--backup", file, "--reason", "drop t");
    expect(begin.code, begin.err).toBe(0);
    expect(begin.out).toMatch(/OPEN/);
    expect((await ctl(a, "sql", "DROP TABLE t")).code).toBe(0);
    expect((await ctl(a, "maintenance", "end")).out).toMatch(/closed/);
    const h = await ctl(a, "-w", "json", "schema", "history");
    const kinds = JSON.parse(h.out).changes.map((c: { kind: string }) => c.kind);
    expect(kinds).toContain("DROP TABLE");
  });

  it("shell: multi-line statements end at a top-level semicolon; dot-commands work", async () => {
    // Proves the shell's statement assembly (including trigger bodies) and .tables/.schema.
    expect(statementComplete("SELECT 1;")).toBe(true);
    expect(statementComplete("SELECT ';")).toBe(false);
    expect(statementComplete("CREATE TRIGGER g AFTER INSERT ON s BEGIN INSERT INTO s VALUES (1);")).toBe(
      false,
    );
    expect(statementComplete("CREATE TRIGGER g AFTER INSERT ON s BEGIN INSERT INTO s VALUES (1); END;")).toBe(
      true,
    );
    const input = new PassThrough();
    const output = new PassThrough();
    let text = "";
    output.on("data", (c: Buffer) => {
      text += c.toString();
    });
    const conn = new FlareDbConnection({ endpoints: [a.endpoint] });
    const done = runShell(conn, { format: "table", consistency: "linearizable", input, output });
    input.end(
      "CREATE TABLE shell_t (\n  id INTEGER PRIMARY KEY,\n  v TEXT\n);\nINSERT INTO shell_t(v)\nVALUES ('a');\nSELECT v FROM shell_t;\n.tables\n.schema shell_t\n.quit\n",
    );
    await done;
    conn.close();
    expect(text).toMatch(/│ a +│/);
    expect(text).toMatch(/shell_t/);
    expect(text).toMatch(/CREATE TABLE shell_t/);
  });
});
