import { describe, expect, it } from "vitest";
import { jsonValues, scanJson } from "./etcd-gateway.js";

describe("jsonValues (the gateway's request bodies)", () => {
  it("reads one object, several in a row (a stream's messages), and an empty body as one empty request", () => {
    // Proves a watch body with a create and a cancel becomes two messages, and braces or quotes
    // inside strings do not split one.
    expect(jsonValues('{"key":"Zm9v"}')).toEqual([{ key: "Zm9v" }]);
    expect(jsonValues('{"create_request":{"key":"YQ=="}}\n{"cancel_request":{"watch_id":"0"}}')).toEqual([
      { create_request: { key: "YQ==" } },
      { cancel_request: { watch_id: "0" } },
    ]);
    expect(jsonValues('{"a":"}{\\"}"}{"b":[1,{"c":2}]}')).toEqual([{ a: '}{"}' }, { b: [1, { c: 2 }] }]);
    expect(jsonValues('"x"')).toEqual(["x"]);
    // 64-bit integers beyond a double's exact range stay exact, as strings; others stay numbers.
    expect(jsonValues('{"ID":9007199254740993,"TTL":30,"n":[-18446744073709551615,1.5e3]}')).toEqual([
      { ID: "9007199254740993", TTL: 30, n: ["-18446744073709551615", 1500] },
    ]);
    expect(jsonValues('{"s":"9007199254740993 \\" 12345678901234567890"}')).toEqual([
      { s: '9007199254740993 " 12345678901234567890' },
    ]);
    expect(jsonValues("")).toEqual([{}]);
    expect(jsonValues(" \n ")).toEqual([{}]);
  });

  it("refuses what is not JSON, or is cut short", () => {
    // Proves a malformed body is an error (the gateway answers 400), never a partial request.
    for (const body of ["not json", '{"key":"Zm9v"', '{"key":"Zm9v}', "}", '{"a":1} x', '"x"{"a":1}']) {
      expect(() => jsonValues(body), body).toThrow(SyntaxError);
    }
  });

  it("reads a streamed body's messages as they complete, keeping the part still to come", () => {
    // Proves a watch body sent in pieces yields each message once it is whole, a big integer split
    // across pieces included, and that a stream takes only objects.
    let pending = '{"create_request":{"key":"YQ=="}}{"cancel_request":{"watch_id":900719925';
    let step = scanJson(pending, true);
    expect(step.values).toEqual([{ create_request: { key: "YQ==" } }]);
    pending = `${step.rest}4740993}}`;
    step = scanJson(pending, true);
    expect(step).toEqual({ values: [{ cancel_request: { watch_id: "9007199254740993" } }], rest: "" });
    expect(scanJson('{"a":"still go', true)).toEqual({ values: [], rest: '{"a":"still go' });
    expect(() => scanJson('{"a":1} 7', true)).toThrow(SyntaxError);
  });
});
