import { describe, expect, it } from "vitest";
import { type GlobalOptions, credentialsOf } from "./connection.js";
import { normaliseBoolFlags } from "./program.js";

const base: GlobalOptions = {
  endpoints: "127.0.0.1:2379",
  writeOut: "simple",
  dialTimeout: "2s",
  commandTimeout: "5s",
};

describe("chainfirectl's global flags as etcdctl reads them", () => {
  it("splits --user and --password as etcdctl's authCfgFromCmd does", () => {
    // Proves each etcdctl form gives the same name and password.
    expect(credentialsOf({ ...base })).toBeNull();
    expect(credentialsOf({ ...base, password: "p" })).toBeNull();
    expect(credentialsOf({ ...base, user: "root:s:3" })).toEqual({ name: "root", password: "s:3" });
    expect(credentialsOf({ ...base, user: "root:x", password: "y" })).toEqual({
      name: "root:x",
      password: "y",
    });
    expect(credentialsOf({ ...base, user: "root:x", password: "" })).toEqual({ name: "root", password: "x" });
    expect(credentialsOf({ ...base, user: "root" })).toEqual({ name: "root", password: "" });
  });

  it("takes Go's boolean spellings in --flag=value, and leaves arguments after -- alone", () => {
    // Proves `--hex=T`, `--insecure-transport=false` and friends parse as pflag parses them.
    expect(
      normaliseBoolFlags(["--hex=T", "--insecure-transport=False", "--insecure-skip-tls-verify=1"]),
    ).toEqual(["--hex", "--no-insecure-transport", "--insecure-skip-tls-verify"]);
    expect(normaliseBoolFlags(["put", "--", "--hex=maybe"])).toEqual(["put", "--", "--hex=maybe"]);
    expect(() => normaliseBoolFlags(["--hex=maybe"])).toThrow('--hex: "maybe" is not true or false');
  });
});
