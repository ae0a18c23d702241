import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  GatewayJsonError,
  JsonNumber,
  firstJsonValue,
  JsonScanner,
  loadGatewayProtos,
  messageFields,
  protoRequest,
} from "./gateway-json.js";

/** Every value of `text` fed to a scanner in one piece, or one character at a time. */
function scanAll(text: string, bytewise = false): unknown[] {
  const scanner = new JsonScanner();
  if (!bytewise) return scanner.push(text);
  return [...text].flatMap((c) => scanner.push(c));
}

describe("the gateway's request bodies", () => {
  it("reads a unary body's first value, as etcd's gateway: an empty body or null is an empty request", () => {
    // Proves braces or quotes inside strings do not end a value, what follows the first value is
    // ignored (etcd's decoder reads one), and integers beyond a double's range keep their text, as
    // do numbers that are not integers (so an integer field can refuse them).
    expect(firstJsonValue('{"key":"Zm9v"}')).toEqual({ key: "Zm9v" });
    expect(firstJsonValue('{"a":"}{\\"}"} {"b":1} x')).toEqual({ a: '}{"}' });
    expect(firstJsonValue('{"ID":9007199254740993,"TTL":30,"n":[-18446744073709551615,1.5e3,-0]}')).toEqual({
      ID: new JsonNumber("9007199254740993"),
      TTL: 30,
      n: [new JsonNumber("-18446744073709551615"), new JsonNumber("1.5e3"), -0],
    });
    expect(firstJsonValue('{"s":"9007199254740993 \\" 12345678901234567890"}')).toEqual({
      s: '9007199254740993 " 12345678901234567890',
    });
    expect([firstJsonValue(""), firstJsonValue(" \n "), firstJsonValue("null")]).toEqual([{}, {}, {}]);
  });

  it("refuses what is not JSON, is cut short, or is not an object, in Go's words where etcd's are known", () => {
    // Proves a malformed body is an error (the gateway answers 400), never a partial request, and
    // that quoting long numbers never makes invalid text valid (a number as a key, a leading zero).
    const refusal = (body: string) => {
      try {
        firstJsonValue(body);
      } catch (err) {
        if (err instanceof GatewayJsonError) return err.message;
        throw err;
      }
      return "accepted";
    };
    expect(refusal('{"key":"Zm9v"')).toBe("unexpected EOF");
    expect(refusal('"x"')).toBe(
      "json: cannot unmarshal string into Go value of type map[string]json.RawMessage",
    );
    expect(refusal("7")).toBe(
      "json: cannot unmarshal number into Go value of type map[string]json.RawMessage",
    );
    expect(refusal("}")).toBe("invalid character '}' looking for beginning of value");
    // Text that is not JSON: Go's encoding/json words, blaming the same character (as etcd's
    // gateway answers; the differential test compares some of these with a live etcd).
    const syntax: [string, string][] = [
      ["not json", "invalid character 'o' in literal null (expecting 'u')"],
      ['{"key":"Zm9v}', "unexpected EOF"],
      ["{99999999999999999999:0}", "invalid character '9' looking for beginning of object key string"],
      ['{"key":"eg==",1e5:2}', "invalid character '1' looking for beginning of object key string"],
      ['{"a":01.5}', "invalid character '1' after object key:value pair"],
      ['{"a":1.}', "invalid character '}' after decimal point in numeric literal"],
      ['{"a":-}', "invalid character '}' in numeric literal"],
      ['{"a":+1}', "invalid character '+' looking for beginning of value"],
      ['{"a":1e}', "invalid character '}' in exponent of numeric literal"],
      ['{"a" 1}', "invalid character '1' after object key"],
      ['{"a":1 "b":2}', "invalid character '\"' after object key:value pair"],
      ['{"a":[1 2]}', "invalid character '2' after array element"],
      ['{"a":1,}', "invalid character '}' looking for beginning of object key string"],
      ['{"a":}', "invalid character '}' looking for beginning of value"],
      ['{"a":tru}', "invalid character '}' in literal true (expecting 'e')"],
      ['{"a":nul}', "invalid character '}' in literal null (expecting 'l')"],
      ['{"a":fals}', "invalid character '}' in literal false (expecting 'e')"],
      ['{"a":"\\x"}', "invalid character 'x' in string escape code"],
      ['{"a":"\\u12G4"}', "invalid character 'G' in \\u hexadecimal character escape"],
      ['{"a":"tab\there"}', "invalid character '\\t' in string literal"],
      ["{'a':1}", "invalid character '\\'' looking for beginning of object key string"],
      ['{"a":\\}', "invalid character '\\\\' looking for beginning of value"],
      ['{"a":é}', "invalid character 'Ã' looking for beginning of value"],
      ["nul", "unexpected EOF"],
      // A scalar body is read whole before it is found not to be a request.
      ["trux", "invalid character 'x' in literal true (expecting 'e')"],
      ['"abc', "unexpected EOF"],
      ["-x", "invalid character 'x' in numeric literal"],
      ["true", "json: cannot unmarshal bool into Go value of type map[string]json.RawMessage"],
      ["12 {}", "json: cannot unmarshal number into Go value of type map[string]json.RawMessage"],
      // A body that ends inside a value: the first malformed character is blamed, as Go's decoder
      // stops there, and "unexpected EOF" only when all of it was sound.
      ['{"a":[1,}', "invalid character '}' looking for beginning of value"],
      ["[1 2", "invalid character '2' after array element"],
      ['{"a":x', "invalid character 'x' looking for beginning of value"],
      ['{"a":[1,', "unexpected EOF"],
      // Go's limit on nesting.
      [`${"[".repeat(10_001)}${"]".repeat(10_001)}`, "invalid character '[' exceeded max depth"],
    ];
    for (const [body, message] of syntax) expect(refusal(body), body.slice(0, 40)).toBe(message);
    expect(firstJsonValue(`{"x":${"[".repeat(9_999)}${"]".repeat(9_999)}}`)).toHaveProperty("x");
  });

  it("reads a streamed body's messages as they complete, whatever the pieces", () => {
    // Proves a watch body sent in pieces yields each message once it is whole (a big integer and
    // an escape split across pieces included), the same as sent whole, and that a stream takes
    // only objects (null as an empty one).
    const body =
      '{"create_request":{"key":"YQ=="}}\n{"cancel_request":{"watch_id":9007199254740993}} null {"s":"a\\"}b"}';
    const expected = [
      { create_request: { key: "YQ==" } },
      { cancel_request: { watch_id: new JsonNumber("9007199254740993") } },
      {},
      { s: 'a"}b' },
    ];
    expect(scanAll(body)).toEqual(expected);
    expect(scanAll(body, true)).toEqual(expected);
    // Invalid text split anywhere yields no value (a number's end may come in the next piece).
    for (const invalid of ['{"a":01}', "{1:2}", '{"a":1.}', '{"a":-}', '{"a":1e}', '{"a":1-2}', "[1,]"]) {
      for (let cut = 0; cut <= invalid.length; cut++) {
        const pieces = new JsonScanner();
        const read = () => [...pieces.push(invalid.slice(0, cut)), ...pieces.push(invalid.slice(cut))];
        expect(read, `${invalid} cut at ${cut}`).toThrow(GatewayJsonError);
      }
    }
    const split = new JsonScanner();
    expect([
      ...split.push('{"a":-'),
      ...split.push('12345678901234567890,"b":1.5e'),
      ...split.push("3}"),
    ]).toEqual([{ a: new JsonNumber("-12345678901234567890"), b: new JsonNumber("1.5e3") }]);
    // A message completed before a malformed one in the same piece is handed over first.
    const handed: unknown[] = [];
    expect(() => new JsonScanner().pushEach('{"a":1} {"b":2} 7', (v) => handed.push(v))).toThrow(
      GatewayJsonError,
    );
    expect(handed).toEqual([{ a: 1 }, { b: 2 }]);
    const scanner = new JsonScanner();
    expect(scanner.push('{"a":"still go')).toEqual([]);
    expect(scanner.pending).toBe(true);
    expect(() => scanner.push('ing"} 7')).toThrow(
      "json: cannot unmarshal number into Go value of type map[string]json.RawMessage",
    );
  });
});

describe("protoRequest (a JSON request checked against its proto)", () => {
  const messages = messageFields(
    loadGatewayProtos(fileURLToPath(new URL("../../../../proto", import.meta.url))),
  );
  const read = (type: string, body: string) =>
    protoRequest(firstJsonValue(body), `etcdserverpb.${type}`, messages);

  it("takes what etcd's gateway takes, under the proto's names", () => {
    // Proves the accepted spellings reach the codec in the form it reads: quoted or bare integers as
    // decimal strings (exact beyond 2^53), enum names or numbers, byte arrays and wrapped base64 as
    // base64, camelCase names (the camelCase one read when both are sent), nulls and unknown keys
    // left out, nested and repeated messages checked too.
    expect(
      read(
        "PutRequest",
        '{"key":"Zm9v","value":"YWJj\\nZA==","lease":" 12","prevKv":true,"ignore_value":null,"bogus":{"x":1}}',
      ),
    ).toEqual({ key: "Zm9v", value: "YWJjZA==", lease: "12", prev_kv: true });
    expect(read("PutRequest", '{"key":[102,111,111],"lease":9223372036854775807}')).toEqual({
      key: "Zm9v",
      lease: "9223372036854775807",
    });
    expect(
      read(
        "RangeRequest",
        '{"key":"AA==","sort_order":"DESCEND","sort_target":3,"range_end":"AQ==","rangeEnd":"Ag=="}',
      ),
    ).toEqual({
      key: "AA==",
      sort_order: "DESCEND",
      sort_target: 3,
      range_end: "Ag==",
    });
    expect(
      read(
        "TxnRequest",
        '{"compare":[{"key":"YQ==","target":"VERSION","result":"EQUAL","version":"3"}],"success":[{"requestPut":{"key":"YQ=="}}],"failure":null}',
      ),
    ).toEqual({
      compare: [{ key: "YQ==", target: "VERSION", result: "EQUAL", version: "3" }],
      success: [{ request_put: { key: "YQ==" } }],
    });
    expect(read("MemberRemoveRequest", '{"ID":18446744073709551615}')).toEqual({
      ID: "18446744073709551615",
    });
    // A null element of a list of scalars is its zero value, as Go's decoder leaves it.
    expect(read("WatchRequest", '{"create_request":{"key":[97,null],"filters":[null,"NODELETE"]}}')).toEqual({
      create_request: { key: Buffer.from([97, 0]).toString("base64"), filters: [0, "NODELETE"] },
    });
    expect(read("WatchRequest", '{"create_request":{"key":"YQ==","filters":["NOPUT",1]}}')).toEqual({
      create_request: { key: "YQ==", filters: ["NOPUT", 1] },
    });
  });

  it("refuses a value of the wrong type with jsonpb's words, as etcd's gateway does", () => {
    // Proves nothing is coerced: each of these used to become a request (a lease "abc" read as no
    // lease, "yes" as true, a truncated base64 decoded anyway) and would have changed the store.
    const cases: [string, string, string][] = [
      ["PutRequest", '{"key":5}', "json: cannot unmarshal number into Go value of type []uint8"],
      ["PutRequest", '{"key":["Zm9v"]}', "json: cannot unmarshal string into Go value of type uint8"],
      ["PutRequest", '{"key":[256]}', "json: cannot unmarshal number 256 into Go value of type uint8"],
      ["PutRequest", '{"key":[1.5]}', "json: cannot unmarshal number 1.5 into Go value of type uint8"],
      ["PutRequest", '{"key":"Zm9"}', "illegal base64 data at input byte 0"],
      ["PutRequest", '{"key":"Zg="}', "illegal base64 data at input byte 3"],
      ["PutRequest", '{"key":"Zm9v="}', "illegal base64 data at input byte 4"],
      ["PutRequest", '{"key":"Zm-v"}', "illegal base64 data at input byte 2"],
      ["PutRequest", '{"key":"Zm9vYm!y"}', "illegal base64 data at input byte 6"],
      ["PutRequest", '{"lease":"abc"}', "invalid character 'a' looking for beginning of value"],
      ["PutRequest", '{"lease":""}', "unexpected end of JSON input"],
      ["PutRequest", '{"lease":"+3"}', "invalid character '+' looking for beginning of value"],
      ["PutRequest", '{"lease":"03"}', "invalid character '3' after top-level value"],
      ["PutRequest", '{"lease":1.5}', "json: cannot unmarshal number 1.5 into Go value of type int64"],
      ["PutRequest", '{"lease":1e3}', "json: cannot unmarshal number 1e3 into Go value of type int64"],
      ["PutRequest", '{"lease":"1e3"}', "json: cannot unmarshal number 1e3 into Go value of type int64"],
      ["PutRequest", '{"lease":true}', "json: cannot unmarshal bool into Go value of type int64"],
      ["PutRequest", '{"lease":[1]}', "json: cannot unmarshal array into Go value of type int64"],
      ["PutRequest", '{"lease":{}}', "json: cannot unmarshal object into Go value of type int64"],
      [
        "PutRequest",
        '{"lease":9223372036854775808}',
        "json: cannot unmarshal number 9223372036854775808 into Go value of type int64",
      ],
      ["PutRequest", '{"prev_kv":"yes"}', "json: cannot unmarshal string into Go value of type bool"],
      ["PutRequest", '{"prev_kv":1}', "json: cannot unmarshal number into Go value of type bool"],
      ["MemberRemoveRequest", '{"ID":-1}', "json: cannot unmarshal number -1 into Go value of type uint64"],
      ["MemberRemoveRequest", '{"ID":"0x10"}', "invalid character 'x' after top-level value"],
      [
        "MemberAddRequest",
        '{"peerURLs":"http://a:1"}',
        "json: cannot unmarshal string into Go value of type []json.RawMessage",
      ],
      ["MemberAddRequest", '{"peerURLs":[5]}', "json: cannot unmarshal number into Go value of type string"],
      [
        "RangeRequest",
        '{"sort_order":"BOGUS"}',
        'unknown value "BOGUS" for enum etcdserverpb.RangeRequest_SortOrder',
      ],
      [
        "RangeRequest",
        '{"sort_order":"1"}',
        'unknown value "1" for enum etcdserverpb.RangeRequest_SortOrder',
      ],
      [
        "RangeRequest",
        '{"sort_order":1.5}',
        "json: cannot unmarshal number 1.5 into Go value of type etcdserverpb.RangeRequest_SortOrder",
      ],
      ["AlarmRequest", '{"alarm":"BOGUS"}', 'unknown value "BOGUS" for enum etcdserverpb.AlarmType'],
      [
        "TxnRequest",
        '{"compare":{"key":"YQ=="}}',
        "json: cannot unmarshal object into Go value of type []json.RawMessage",
      ],
      [
        "TxnRequest",
        '{"success":[{"request_put":"x"}]}',
        "json: cannot unmarshal string into Go value of type map[string]json.RawMessage",
      ],
      [
        "TxnRequest",
        '{"success":[{"request_put":{"key":5}}]}',
        "json: cannot unmarshal number into Go value of type []uint8",
      ],
      [
        "TxnRequest",
        '{"compare":[{"target":"BOGUS"}]}',
        'unknown value "BOGUS" for enum etcdserverpb.Compare_CompareTarget',
      ],
      ["TxnRequest", '{"compare":[null]}', "a null element in the list compare"],
      ["RangeRequest", "[]", "json: cannot unmarshal array into Go value of type map[string]json.RawMessage"],
      [
        "WatchRequest",
        '{"create_request":{"filters":"NOPUT"}}',
        'invalid target "slice" for enum etcdserverpb.WatchCreateRequest_FilterType',
      ],
      [
        "RangeRequest",
        '"x"',
        "json: cannot unmarshal string into Go value of type map[string]json.RawMessage",
      ],
    ];
    for (const [type, body, message] of cases) {
      expect(() => read(type, body), body).toThrow(new GatewayJsonError(message));
    }
  });
});
