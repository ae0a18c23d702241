// Backups in two formats, both self-verifying:
//
// SQL (logical dump), text:
//   -- flaredb dump v1
//   -- applied_index: <n>
//   <body: CREATE TABLE..., INSERT..., CREATE INDEX/VIEW/TRIGGER..., one per statement>
//   -- flaredb-end content_sha256=<hex> sha256=<hex> bytes=<n>
// `sha256` covers every byte before the trailer line (`bytes` of them); `content_sha256` covers the
// body only, so it identifies the data regardless of the index it was taken at.
//
// SQLITE (file image): the SQLite database image followed by a 96-byte trailer:
//   magic "FLAREDBSQLITEBK1" (16) | applied index u64 BE | image length u64 BE |
//   content sha256 (32, the dump body of the image) | sha256 of the image (32).
//
// The body is canonical: objects in a fixed order (tables, then rows, then indexes, views and
// triggers, each group in creation order), rows in key order, exact literals. Equal states give
// byte-equal bodies, which is what replica comparison and maintenance freshness rely on.

import { createHash } from "node:crypto";
import Database from "better-sqlite3";
import { FlareDbError } from "../errors.js";
import { internalTablePrefix } from "./inspect.js";
import { quoteIdentifier, sqlLiteral } from "./values.js";

export const BackupFormat = { Sql: "sql", Sqlite: "sqlite" } as const;
export type BackupFormat = (typeof BackupFormat)[keyof typeof BackupFormat];

export interface BackupFacts {
  format: BackupFormat;
  appliedIndex: bigint;
  contentSha256: string;
  fileSha256: string;
  sizeBytes: number;
}

export interface VerifiedBackup extends BackupFacts {
  /** The canonical dump body to load. */
  body: string;
}

const sqlMagic = "-- flaredb dump v1\n";
const sqliteMagic = Buffer.from("FLAREDBSQLITEBK1", "ascii");
const sqliteTrailerBytes = 96;
const sqliteHeader = Buffer.from("SQLite format 3\0", "binary");
/** The schema-history table travels in backups; the meta table (applied index, window) does not. */
export const historyTable = `${internalTablePrefix}schema_history`;

const sha256 = (data: string | Uint8Array): string => createHash("sha256").update(data).digest("hex");

interface SchemaObject {
  type: string;
  name: string;
  sql: string;
}

/** The canonical dump body of `db` (user objects plus the schema history). */
export function dumpBody(db: Database.Database): string {
  const objects = db
    .prepare(
      `SELECT type, name, sql FROM sqlite_schema
       WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
         AND (name NOT LIKE '\\_flaredb\\_%' ESCAPE '\\' OR name = ?)
       ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 WHEN 'view' THEN 2 ELSE 3 END, rowid`,
    )
    .all(historyTable) as SchemaObject[];
  const out: string[] = [];
  const tables = objects.filter((o) => o.type === "table");
  for (const t of tables) if (t.name !== historyTable) out.push(`${t.sql};\n`);
  for (const t of tables) dumpRows(db, t.name, out);
  dumpSequences(db, out);
  for (const o of objects) if (o.type !== "table") out.push(`${o.sql};\n`);
  return out.join("");
}

function dumpRows(db: Database.Database, table: string, out: string[]): void {
  const q = quoteIdentifier(table);
  // Plain JS numbers for these small values, whatever the connection's safe-integer default.
  const info = db
    .prepare("SELECT name, pk, hidden FROM pragma_table_xinfo(?)")
    .safeIntegers(false)
    .all(table) as { name: string; pk: number; hidden: number }[];
  const list = db
    .prepare("SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?")
    .safeIntegers(false)
    .get(table) as { wr: number } | undefined;
  // Generated columns (hidden 2 or 3) are computed, never inserted.
  const columns = info.filter((c) => c.hidden === 0).map((c) => c.name);
  const withoutRowid = list?.wr === 1;
  const keyColumns = info
    .filter((c) => c.pk > 0)
    .sort((a, b) => a.pk - b.pk)
    .map((c) => quoteIdentifier(c.name));
  const selectList = columns.map(quoteIdentifier);
  if (!withoutRowid) selectList.unshift("_rowid_");
  const order = withoutRowid ? keyColumns.join(", ") : "_rowid_";
  const stmt = db
    .prepare(`SELECT ${selectList.join(", ")} FROM ${q} ORDER BY ${order}`)
    .raw(true)
    .safeIntegers(true);
  const insertColumns = (withoutRowid ? [] : ["_rowid_"]).concat(columns.map(quoteIdentifier)).join(", ");
  for (const row of stmt.iterate() as Iterable<unknown[]>) {
    out.push(`INSERT INTO ${q}(${insertColumns}) VALUES(${row.map(sqlLiteral).join(", ")});\n`);
  }
}

function dumpSequences(db: Database.Database, out: string[]): void {
  const exists = db.prepare("SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_sequence'").get();
  if (exists === undefined) return;
  const rows = db
    .prepare("SELECT name, seq FROM sqlite_sequence ORDER BY name")
    .raw(true)
    .safeIntegers(true)
    .all() as unknown[][];
  // Loading rows with explicit keys already created counters; the dump's values replace them.
  if (rows.length > 0) out.push("DELETE FROM sqlite_sequence;\n");
  for (const [name, seq] of rows) {
    out.push(`INSERT INTO sqlite_sequence(name, seq) VALUES(${sqlLiteral(name)}, ${sqlLiteral(seq)});\n`);
  }
}

/** A complete SQL-format backup of `db` as of `appliedIndex`. */
export function sqlBackup(
  db: Database.Database,
  appliedIndex: bigint,
): { bytes: Buffer; facts: BackupFacts } {
  const body = dumpBody(db);
  const head = `${sqlMagic}-- applied_index: ${appliedIndex}\n`;
  const prefix = Buffer.from(head + body, "utf8");
  const contentSha256 = sha256(body);
  const fileSha256 = sha256(prefix);
  const trailer = `-- flaredb-end content_sha256=${contentSha256} sha256=${fileSha256} bytes=${prefix.length}\n`;
  const bytes = Buffer.concat([prefix, Buffer.from(trailer, "utf8")]);
  return {
    bytes,
    facts: { format: "sql", appliedIndex, contentSha256, fileSha256, sizeBytes: bytes.length },
  };
}

/** A complete SQLite-format backup: the consistent image `db.serialize()` gives, plus the trailer. */
export function sqliteBackup(
  db: Database.Database,
  appliedIndex: bigint,
): { bytes: Buffer; facts: BackupFacts } {
  const image = db.serialize();
  // Header bytes 18/19 = 1: a rollback-journal file, which opens anywhere (also in memory, for
  // verification); a WAL-mode image cannot be opened from memory.
  image[18] = 1;
  image[19] = 1;
  const contentSha256 = sha256(dumpBody(db));
  const trailer = Buffer.alloc(sqliteTrailerBytes);
  sqliteMagic.copy(trailer, 0);
  trailer.writeBigUInt64BE(appliedIndex, 16);
  trailer.writeBigUInt64BE(BigInt(image.length), 24);
  Buffer.from(contentSha256, "hex").copy(trailer, 32);
  const fileSha256 = sha256(image);
  Buffer.from(fileSha256, "hex").copy(trailer, 64);
  const bytes = Buffer.concat([image, trailer]);
  return {
    bytes,
    facts: { format: "sqlite", appliedIndex, contentSha256, fileSha256, sizeBytes: bytes.length },
  };
}

const corrupt = (why: string): FlareDbError =>
  new FlareDbError(
    "FLAREDB_BACKUP_CORRUPT",
    `backup refused: ${why}; nothing was changed (take the backup again)`,
  );

/** Verifies a backup of either format (checksums first) and returns its canonical body. */
export function verifyBackup(bytes: Uint8Array): VerifiedBackup {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.subarray(0, sqliteHeader.length).equals(sqliteHeader)) return verifySqliteBackup(buf);
  if (buf.subarray(0, sqlMagic.length).toString("utf8") === sqlMagic) return verifySqlBackup(buf);
  throw corrupt("not a flaredb backup (neither a flaredb SQL dump nor a SQLite image)");
}

function verifySqlBackup(buf: Buffer): VerifiedBackup {
  const end = buf.lastIndexOf("\n-- flaredb-end ");
  if (end < 0 || buf[buf.length - 1] !== 0x0a) throw corrupt("the SQL dump has no trailer (truncated?)");
  const prefix = buf.subarray(0, end + 1);
  const trailer = buf.subarray(end + 1).toString("utf8");
  const m = /^-- flaredb-end content_sha256=([0-9a-f]{64}) sha256=([0-9a-f]{64}) bytes=(\d+)\n$/.exec(
    trailer,
  );
  if (m === null) throw corrupt("the SQL dump trailer is malformed");
  if (Number(m[3]) !== prefix.length)
    throw corrupt(`the SQL dump is ${prefix.length} bytes, trailer says ${m[3]}`);
  if (sha256(prefix) !== m[2]) throw corrupt("the SQL dump's sha256 does not match its trailer");
  const text = prefix.toString("utf8");
  const headEnd = text.indexOf("\n", sqlMagic.length);
  const index = /^-- applied_index: (\d+)$/.exec(text.slice(sqlMagic.length, headEnd));
  if (index === null) throw corrupt("the SQL dump header is malformed");
  const body = text.slice(headEnd + 1);
  if (sha256(body) !== m[1]) throw corrupt("the SQL dump's content sha256 does not match its trailer");
  return {
    format: "sql",
    appliedIndex: BigInt(index[1]!),
    contentSha256: m[1]!,
    fileSha256: m[2]!,
    sizeBytes: buf.length,
    body,
  };
}

function verifySqliteBackup(buf: Buffer): VerifiedBackup {
  if (buf.length < sqliteTrailerBytes + 512) throw corrupt("the SQLite backup is too short (truncated?)");
  const trailer = buf.subarray(buf.length - sqliteTrailerBytes);
  if (!trailer.subarray(0, 16).equals(sqliteMagic))
    throw corrupt("the SQLite backup has no flaredb trailer (truncated?)");
  const appliedIndex = trailer.readBigUInt64BE(16);
  const length = trailer.readBigUInt64BE(24);
  const image = buf.subarray(0, buf.length - sqliteTrailerBytes);
  if (length !== BigInt(image.length))
    throw corrupt(`the image is ${image.length} bytes, trailer says ${length}`);
  const fileSha256 = trailer.subarray(64, 96).toString("hex");
  if (sha256(image) !== fileSha256) throw corrupt("the SQLite image's sha256 does not match its trailer");
  const contentSha256 = trailer.subarray(32, 64).toString("hex");
  let body: string;
  const db = new Database(Buffer.from(image));
  try {
    const check = db.prepare("PRAGMA quick_check").pluck().get();
    if (check !== "ok") throw corrupt(`SQLite integrity check failed: ${String(check)}`);
    body = dumpBody(db);
  } finally {
    db.close();
  }
  if (sha256(body) !== contentSha256) throw corrupt("the SQLite image's content does not match its trailer");
  return { format: "sqlite", appliedIndex, contentSha256, fileSha256, sizeBytes: buf.length, body };
}

export function contentSha256(db: Database.Database): string {
  return sha256(dumpBody(db));
}
