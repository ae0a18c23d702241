// Go's quoting of byte strings (strconv.Quote, the `%q` verb), for output that etcd's Go tools print
// and scripts written for them parse.

/** The bytes Go's quoting writes as a backslash escape, besides the quote character itself. */
export const GO_CONTROL_ESCAPES: Readonly<Record<number, string>> = {
  7: "\\a",
  8: "\\b",
  9: "\\t",
  10: "\\n",
  11: "\\v",
  12: "\\f",
  13: "\\r",
  92: "\\\\",
};
const QUOTED_ESCAPES: Readonly<Record<number, string>> = { ...GO_CONTROL_ESCAPES, 34: '\\"' };
// ignoreBOM: each character is decoded on its own, and a U+FEFF must not be taken for a BOM and dropped.
const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const hex2 = (b: number) => b.toString(16).padStart(2, "0");

/**
 * Go's `%q` of a byte string, as etcdctl puts keys and values in a watch command's environment:
 * double-quoted, printable characters as they are, the rest escaped (`\n`, `\x00`, `\u200b`), and
 * bytes that are not UTF-8 as `\x..`.
 */
export function goQuote(bytes: Uint8Array): string {
  let out = '"';
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i]!;
    if (b < 0x80) {
      out += QUOTED_ESCAPES[b] ?? (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${hex2(b)}`);
      i++;
      continue;
    }
    const width = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    let char: string | null = null;
    if (width > 1 && i + width <= bytes.length) {
      try {
        char = UTF8.decode(bytes.subarray(i, i + width));
      } catch {
        char = null;
      }
    }
    if (char === null) {
      out += `\\x${hex2(b)}`;
      i++;
      continue;
    }
    const code = char.codePointAt(0)!;
    if (/[\p{L}\p{M}\p{N}\p{P}\p{S}]/u.test(char)) out += char;
    else if (code < 0x10000) out += `\\u${code.toString(16).padStart(4, "0")}`;
    else out += `\\U${code.toString(16).padStart(8, "0")}`;
    i += width;
  }
  return `${out}"`;
}
