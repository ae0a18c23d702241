import { describe, expect, it } from "vitest";
import { inspectStatement, rewriteTimeKeywords } from "../src/sql/inspect.js";
import { splitStatements, tokenize } from "../src/sql/tokenizer.js";

describe("tokenizer", () => {
  it("covers every character and keeps strings, comments and quoted identifiers whole", () => {
    // Proves the lexer is lossless and recognises SQLite's quoting forms.
    const sql = `SELECT 'it''s; CURRENT_DATE', "a""b", [x y], \`z\`, x'00ff', 1.5e3, ?2, :n -- c; CURRENT_TIME\n/* ; */ FROM t;`;
    const tokens = tokenize(sql);
    expect(tokens.map((t) => t.text).join("")).toBe(sql);
    const kinds = tokens
      .filter((t) => t.kind !== "whitespace" && t.kind !== "punctuation")
      .map((t) => [t.kind, t.text]);
    expect(kinds).toEqual([
      ["word", "SELECT"],
      ["string", "'it''s; CURRENT_DATE'"],
      ["quoted-identifier", '"a""b"'],
      ["quoted-identifier", "[x y]"],
      ["quoted-identifier", "`z`"],
      ["blob", "x'00ff'"],
      ["number", "1.5e3"],
      ["parameter", "?2"],
      ["parameter", ":n"],
      ["comment", "-- c; CURRENT_TIME\n"],
      ["comment", "/* ; */"],
      ["word", "FROM"],
      ["word", "t"],
      ["semicolon", ";"],
    ]);
  });

  it("rewrites CURRENT_* keywords only where they are keywords", () => {
    // Proves strings, comments and quoted identifiers are untouched by the determinism rewrite.
    const sql = `SELECT current_timestamp, 'CURRENT_DATE', "CURRENT_TIME", CURRENT_TIME /* CURRENT_DATE */, Current_Date`;
    expect(rewriteTimeKeywords(tokenize(sql))).toBe(
      `SELECT (datetime('now')), 'CURRENT_DATE', "CURRENT_TIME", (time('now')) /* CURRENT_DATE */, (date('now'))`,
    );
  });

  it("splits scripts on top-level semicolons, keeping trigger bodies (with CASE ... END) whole", () => {
    // Proves the splitter understands CREATE TRIGGER ... BEGIN ... END and quoted semicolons.
    const script = `CREATE TABLE a(x); INSERT INTO a VALUES(';');
      CREATE TRIGGER tr AFTER INSERT ON a BEGIN
        UPDATE a SET x = CASE WHEN new.x = 1 THEN 2 ELSE 3 END; DELETE FROM a WHERE x = 0;
      END; SELECT 1;`;
    const parts = splitStatements(script);
    expect(parts).toHaveLength(4);
    expect(parts[2]).toMatch(/^CREATE TRIGGER tr .*DELETE FROM a WHERE x = 0;\s+END$/s);
    expect(parts[3]).toBe("SELECT 1");
  });

  it("classifies statements for the schema guard", () => {
    // Proves each DDL kind gets the class the additive-first rule needs.
    const cases: [string, string, boolean][] = [
      ["CREATE TABLE t(a)", "CREATE TABLE", false],
      ["create unique index i on t(a)", "CREATE INDEX", false],
      ["CREATE VIEW v AS SELECT 1", "CREATE VIEW", false],
      ["ALTER TABLE t ADD COLUMN b TEXT", "ALTER TABLE ADD COLUMN", false],
      ["ALTER TABLE main.t ADD b TEXT DEFAULT 'x'", "ALTER TABLE ADD COLUMN", false],
      ["ALTER TABLE t DROP COLUMN b", "ALTER TABLE DROP COLUMN", true],
      ["ALTER TABLE t RENAME TO u", "ALTER TABLE RENAME", true],
      ["ALTER TABLE t RENAME COLUMN a TO b", "ALTER TABLE RENAME COLUMN", true],
      ["ALTER TABLE t RENAME a TO b", "ALTER TABLE RENAME COLUMN", true],
      ["DROP TABLE t", "DROP TABLE", true],
      ["DROP INDEX i", "DROP INDEX", true],
      ["DROP VIEW v", "DROP VIEW", true],
      ["DROP TRIGGER tr", "DROP TRIGGER", true],
      ["REINDEX", "REINDEX", true],
    ];
    for (const [sql, kind, destructive] of cases) {
      const info = inspectStatement(sql);
      expect([sql, info.kind, info.ddl, info.destructive]).toEqual([sql, kind, true, destructive]);
    }
    expect(inspectStatement("INSERT INTO t VALUES (?, ?)").positionalCount).toBe(2);
    expect(inspectStatement("SELECT :a, @b, $c, :a").names).toEqual(["a", "b", "c"]);
  });

  it("refuses what flaredb never runs, naming the rule", () => {
    // Proves durability PRAGMAs, ATTACH, VACUUM (INTO), transaction control, temp objects and internal-table writes are refused.
    const refused: [string, RegExp][] = [
      ["PRAGMA journal_mode = DELETE", /journaling or durability/],
      ["PRAGMA main.synchronous=OFF", /journaling or durability/],
      ["PRAGMA writable_schema = 1", /journaling or durability/],
      ["PRAGMA foreign_keys = ON", /connection settings are not replicated/],
      ["ATTACH 'x.db' AS x", /no member-local files/],
      ["VACUUM INTO '/tmp/x.db'", /member-local file/],
      ["BEGIN", /ExecuteRequest.transaction/],
      ["CREATE TEMP TABLE x(a)", /not replicated/],
      ["SELECT load_extension('x')", /native code/],
      ["INSERT OR ROLLBACK INTO t VALUES (1)", /ABORT or FAIL/],
      ["DELETE FROM _flaredb_schema_history", /internal tables are read-only/],
      ["CREATE VIRTUAL TABLE f USING fts5(a)", /virtual-table/],
    ];
    for (const [sql, message] of refused) expect(() => inspectStatement(sql), sql).toThrow(message);
    expect(() => inspectStatement("SELECT 1; SELECT 2")).toThrow(/expected one statement, found 2/);
    expect(inspectStatement("PRAGMA user_version = 7").kind).toBe("PRAGMA user_version");
    expect(inspectStatement("PRAGMA table_info(t)").ddl).toBe(false);
  });
});
