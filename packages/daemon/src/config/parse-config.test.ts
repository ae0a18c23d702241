import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, ConfigErrorCode } from "./config-error.js";
import { defineOptions } from "./option-types.js";
import { describeConfig, parseConfig } from "./parse-config.js";

const options = defineOptions({
  name: { flag: "name", env: "TEST_NAME", type: "string", default: "default", description: "member name" },
  heartbeatIntervalMs: {
    flag: "heartbeat-interval",
    env: "TEST_HEARTBEAT_INTERVAL",
    type: "duration-ms",
    default: 100,
    min: 1,
    description: "heartbeat",
  },
  listenClientUrls: {
    flag: "listen-client-urls",
    type: "url-list",
    default: "http://127.0.0.1:2379",
    description: "client URLs",
  },
  snapshotCount: { flag: "snapshot-count", type: "int", default: 10000, description: "entries per snapshot" },
  quotaBackendBytes: { flag: "quota-backend-bytes", type: "bytes", default: "2GiB", description: "quota" },
  clientCertAuth: { flag: "client-cert-auth", type: "bool", description: "mTLS" },
  clusterState: {
    flag: "initial-cluster-state",
    type: "enum",
    values: ["new", "existing"],
    default: "new",
    description: "state",
  },
  dataDir: { flag: "data-dir", type: "path", description: "data directory" },
  memberId: { flag: "member-id", type: "uint64", description: "member id" },
  signingKey: {
    toml: "authn.internal_token.signing_key",
    env: "TEST_SIGNING_KEY",
    type: "string",
    secret: true,
    description: "signing key",
  },
  peers: { flag: "peers", type: "string-list", description: "peer names" },
});

const spec = { name: "testd", options, configFileEnv: "TEST_CONFIG_FILE" };

const tomlDirs: string[] = [];
afterAll(() => {
  for (const dir of tomlDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function tomlFile(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), "daemon-config-"));
  tomlDirs.push(dir);
  const path = join(dir, "config.toml");
  writeFileSync(path, text);
  return path;
}

function run(argv: string[], env: Record<string, string> = {}) {
  const outcome = parseConfig(spec, argv, env);
  if (outcome.action !== "run") throw new Error(`expected run, got ${outcome.action}`);
  return outcome;
}

function errorOf(argv: string[], env: Record<string, string> = {}): ConfigError {
  try {
    parseConfig(spec, argv, env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("expected a ConfigError");
}

describe("parseConfig precedence", () => {
  it("uses defaults when nothing is given, with typed values", () => {
    // Proves every kind's default parses to the documented type.
    const { config, sources } = run([]);
    expect(config.name).toBe("default");
    expect(config.heartbeatIntervalMs).toBe(100);
    expect(config.listenClientUrls.map((u) => u.href)).toEqual(["http://127.0.0.1:2379"]);
    expect(config.quotaBackendBytes).toBe(2 * 1024 ** 3);
    expect(config.clientCertAuth).toBe(false);
    expect(config.clusterState).toBe("new");
    expect(config.dataDir).toBeUndefined();
    expect(sources.name).toBe("default");
  });

  it("ranks flags over env over the TOML file over defaults", () => {
    // Proves the precedence order with the same key set in every source.
    const file = tomlFile('name = "from-file"\nheartbeat-interval = 300\nsnapshot-count = 5\n');
    const env = { TEST_NAME: "from-env", TEST_HEARTBEAT_INTERVAL: "200", TEST_CONFIG_FILE: file };
    const { config, sources, configFile } = run(["--name", "from-flag"], env);
    expect(configFile).toBe(file);
    expect(config.name).toBe("from-flag");
    expect(sources.name).toBe("flag");
    expect(config.heartbeatIntervalMs).toBe(200);
    expect(sources.heartbeatIntervalMs).toBe("env");
    expect(config.snapshotCount).toBe(5);
    expect(sources.snapshotCount).toBe("file");
    expect(config.quotaBackendBytes).toBe(2 * 1024 ** 3);
    expect(sources.quotaBackendBytes).toBe("default");
  });

  it("reads dotted keys from nested TOML tables and native TOML types", () => {
    // Proves `[authn.internal_token] signing_key` reaches the option declared as a dotted key.
    const file = tomlFile(
      [
        'listen-client-urls = ["http://127.0.0.1:1", "https://[::1]:2"]',
        "client-cert-auth = true",
        'member-id = "0x8e9e05c52164694d"',
        "[authn.internal_token]",
        'signing_key = "pem"',
      ].join("\n"),
    );
    const { config } = run(["--config-file", file]);
    expect(config.signingKey).toBe("pem");
    expect(config.clientCertAuth).toBe(true);
    expect(config.memberId).toBe(0x8e9e05c52164694dn);
    expect(config.listenClientUrls.map((u) => u.href)).toEqual(["http://127.0.0.1:1", "https://[::1]:2"]);
  });

  it("accepts etcd-style flag forms", () => {
    // Proves --flag=value, bare boolean flags, units on sizes and durations, and lists.
    const { config } = run([
      "--client-cert-auth",
      "--heartbeat-interval=2s",
      "--quota-backend-bytes",
      "8MB",
      "--peers",
      "a, b",
      "--data-dir",
      "rel/dir",
    ]);
    expect(config.clientCertAuth).toBe(true);
    expect(config.heartbeatIntervalMs).toBe(2000);
    expect(config.quotaBackendBytes).toBe(8_000_000);
    expect(config.peers).toEqual(["a", "b"]);
    expect(config.dataDir).toBe(join(process.cwd(), "rel/dir"));
    expect(run(["--client-cert-auth=false"]).config.clientCertAuth).toBe(false);
    // Durations as Go prints them (etcd's --help shows "2h0m0s"), which etcd units carry.
    for (const [text, ms] of [
      ["2h0m0s", 7_200_000],
      ["1m30s", 90_000],
      ["1.5s", 1500],
      ["1s500ms", 1500],
    ] as const)
      expect(run([`--heartbeat-interval=${text}`]).config.heartbeatIntervalMs, text).toBe(ms);
    for (const bad of ["1h2", "h", "1d", "1m-2s"])
      expect(() => run([`--heartbeat-interval=${bad}`]), bad).toThrow(ConfigError);
  });

  it("returns help and version outcomes instead of a config", () => {
    // Proves --help lists the flags with their env names, and --version is recognised.
    const help = parseConfig(spec, ["--help"], {});
    expect(help.action).toBe("help");
    if (help.action === "help") {
      const text = help.text.replace(/\s+/g, " ");
      expect(text).toContain("--heartbeat-interval");
      expect(text).toContain("env: TEST_HEARTBEAT_INTERVAL");
      expect(help.text).toContain("--config-file");
    }
    expect(parseConfig(spec, ["--version"], {}).action).toBe("version");
  });

  it("masks secret options when describing the config", () => {
    // Proves the effective-config log line never carries a secret value.
    const { config } = run([], { TEST_SIGNING_KEY: "very-secret-key" });
    const described = JSON.stringify(describeConfig(options, config));
    expect(described).not.toContain("very-secret-key");
    expect(described).toContain("[REDACTED]");
  });
});

describe("parseConfig errors name the key and the fix", () => {
  it("refuses a bad flag value with an example", () => {
    // Proves the message format `--flag: expected ..., got "x" (example: --flag N)`.
    const err = errorOf(["--heartbeat-interval", "abc"]);
    expect(err.code).toBe(ConfigErrorCode.InvalidValue);
    expect(err.message).toBe(
      '--heartbeat-interval: expected a whole number of milliseconds of at least 1, got "abc" (example: --heartbeat-interval 100)',
    );
  });

  it("reads etcd-style aliases of the flags below the option's own variable, when the daemon asks", () => {
    // Proves envAliasPrefix: ETCD_NAME reaches --name, TEST_* wins over the alias, a flag over
    // TEST_* (and is refused over an ETCD_* one, as etcd refuses it), --help lists both names, and a bad alias value names the alias. Without the prefix
    // the aliases are not read.
    const aliased = { ...spec, envAliasPrefix: "ETCD_" };
    const env = {
      ETCD_NAME: "from-alias",
      ETCD_HEARTBEAT_INTERVAL: "200",
      TEST_HEARTBEAT_INTERVAL: "300",
      ETCD_SNAPSHOT_COUNT: "7",
    };
    const parse = (argv: string[], e: Record<string, string>, s: typeof spec = aliased) => {
      const outcome = parseConfig(s, argv, e);
      if (outcome.action !== "run") throw new Error(`unexpected ${outcome.action}`);
      return outcome;
    };
    const { config, sources } = parse([], env);
    expect([config.name, sources.name]).toEqual(["from-alias", "env"]);
    expect([config.heartbeatIntervalMs, config.snapshotCount]).toEqual([300, 7]);
    // A flag wins over the daemon's own variable; one that shadows an etcd variable is refused,
    // as etcd refuses it.
    expect(
      parse(["--heartbeat-interval", "150"], { TEST_HEARTBEAT_INTERVAL: "300" }).config.heartbeatIntervalMs,
    ).toBe(150);
    expect(() => parse(["--snapshot-count", "9"], env)).toThrow(
      "ETCD_SNAPSHOT_COUNT (environment) is shadowed by --snapshot-count on the command line, which etcd refuses too: unset ETCD_SNAPSHOT_COUNT or leave out the flag",
    );
    expect(parse([], env, spec).config.name).toBe("default");
    const help = parseConfig(aliased, ["--help"], {});
    // commander wraps long help lines.
    expect(help.action === "help" ? help.text.replace(/\s+/g, " ") : "").toContain(
      "env: TEST_HEARTBEAT_INTERVAL or ETCD_HEARTBEAT_INTERVAL",
    );
    let err: unknown;
    try {
      parseConfig(aliased, [], { ETCD_HEARTBEAT_INTERVAL: "soon" });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toContain(
      "ETCD_HEARTBEAT_INTERVAL (environment): expected a whole number of milliseconds",
    );
    expect((err as ConfigError).message).toContain("(example: ETCD_HEARTBEAT_INTERVAL=100)");
  });

  it("reads the config file from the prefix's variable too, and reports variables with the prefix that name no option", () => {
    // Proves ETCD_CONFIG_FILE works as etcd's does (below the daemon's own variable and the flag),
    // and that ETCD_* variables naming no flag are listed for a warning (etcd warns of them).
    const aliased = { ...spec, envAliasPrefix: "ETCD_" };
    const parse = (argv: string[], e: Record<string, string>) => {
      const outcome = parseConfig(aliased, argv, e);
      if (outcome.action !== "run") throw new Error(`unexpected ${outcome.action}`);
      return outcome;
    };
    const fromAlias = tomlFile("snapshot-count = 11\n");
    const own = tomlFile("snapshot-count = 12\n");
    const alias = parse([], { ETCD_CONFIG_FILE: fromAlias, ETCD_SNAPSHOT_CUONT: "5", ETCD_NAME: "n" });
    expect([alias.configFile, alias.config.snapshotCount]).toEqual([fromAlias, 11]);
    expect(alias.unknownEnv).toEqual(["ETCD_SNAPSHOT_CUONT"]);
    expect(parse([], { ETCD_CONFIG_FILE: fromAlias, TEST_CONFIG_FILE: own }).config.snapshotCount).toBe(12);
    expect(parse(["--config-file", own], { ETCD_CONFIG_FILE: fromAlias }).configFile).toBe(own);
    // Without the prefix nothing is read from it, and nothing is reported.
    expect(run([], { ETCD_CONFIG_FILE: fromAlias, ETCD_X: "1" })).toMatchObject({
      configFile: undefined,
      unknownEnv: [],
    });
    // The daemon's own prefix, when it names it: a misspelt variable of its own is reported too.
    const own2 = parseConfig({ ...aliased, envPrefix: "TEST_" }, [], {
      TEST_HEARTBEAT_INTERVALL: "200",
      TEST_HEARTBEAT_INTERVAL: "150",
      ETCD_NAMEE: "n",
      OTHER_X: "1",
    });
    expect(own2.action === "run" ? own2.unknownEnv : []).toEqual(["ETCD_NAMEE", "TEST_HEARTBEAT_INTERVALL"]);
  });

  it("refuses a bad environment value naming the variable", () => {
    // Proves env-sourced errors name the variable and show the env form of the fix.
    const err = errorOf([], { TEST_HEARTBEAT_INTERVAL: "soon" });
    expect(err.message).toContain(
      "TEST_HEARTBEAT_INTERVAL (environment): expected a whole number of milliseconds",
    );
    expect(err.message).toContain("(example: TEST_HEARTBEAT_INTERVAL=100)");
  });

  it("refuses a bad TOML value naming the file and key", () => {
    // Proves file-sourced errors name the file, the key, and show the TOML form of the fix.
    const file = tomlFile('initial-cluster-state = "old"\nsnapshot-count = "many"\n');
    const err = errorOf(["--config-file", file]);
    expect(err.issues).toHaveLength(2);
    expect(err.message).toContain(
      `config file ${file}: initial-cluster-state: expected one of "new", "existing", got "old" (example: initial-cluster-state = "new")`,
    );
    expect(err.message).toContain(`config file ${file}: snapshot-count: expected a whole number, got "many"`);
  });

  it("refuses an unknown TOML key with a suggestion", () => {
    // Proves a misspelt key is refused (not ignored) and the closest declared key is suggested.
    const file = tomlFile('listen-client-url = "http://127.0.0.1:2379"\nbogus = 1\n');
    const err = errorOf(["--config-file", file]);
    expect(err.code).toBe(ConfigErrorCode.UnknownKey);
    expect(err.message).toContain(
      `config file ${file}: unknown key "listen-client-url" (did you mean "listen-client-urls"?)`,
    );
    expect(err.message).toContain(`config file ${file}: unknown key "bogus" (remove it)`);
  });

  it("refuses malformed TOML with its line number", () => {
    // Proves a syntax error reports the file and the line to look at.
    const file = tomlFile('name = "ok"\nheartbeat-interval = = 3\n');
    const err = errorOf(["--config-file", file]);
    expect(err.code).toBe(ConfigErrorCode.TomlSyntax);
    expect(err.message).toMatch(new RegExp(`^config file ${file}: invalid TOML at line 2, column \\d+: `));
  });

  it("refuses a missing config file", () => {
    // Proves an unreadable --config-file is a clear error, not an empty config.
    const err = errorOf(["--config-file", "/nonexistent/x.toml"]);
    expect(err.code).toBe(ConfigErrorCode.FileUnreadable);
    expect(err.message).toContain("config file /nonexistent/x.toml: cannot be read: does not exist");
  });

  it("refuses unknown flags and stray arguments", () => {
    // Proves unknown flags are refused with commander's suggestion, and positional arguments too.
    const err = errorOf(["--listen-client-url", "http://127.0.0.1:1"]);
    expect(err.code).toBe(ConfigErrorCode.UnknownFlag);
    expect(err.message).toContain("unknown option '--listen-client-url'");
    expect(err.message).toContain("--listen-client-urls");
    expect(errorOf(["stray"]).code).toBe(ConfigErrorCode.UnknownFlag);
  });

  it("refuses a flag without its value", () => {
    // Proves `--name` at the end of the line is an error, not an empty name.
    const err = errorOf(["--name"]);
    expect(err.code).toBe(ConfigErrorCode.InvalidValue);
    expect(err.message).toContain("--name");
  });

  it("refuses malformed URLs naming the flag", () => {
    // Proves URL-list problems reach the operator with the flag name and an example.
    const err = errorOf(["--listen-client-urls", "http://127.0.0.1:2379,ftp://x:1"]);
    expect(err.message).toBe(
      '--listen-client-urls: "ftp://x:1" has scheme "ftp", expected http or https (expected scheme://host:port, e.g. http://127.0.0.1:2379)',
    );
  });

  it("reports every problem at once and names required options with all ways to set them", () => {
    // Proves a required option given nowhere lists flag, env and TOML forms, alongside other issues.
    const required = defineOptions({
      token: { flag: "token", env: "T_TOKEN", type: "string", required: true, description: "token" },
      size: { flag: "size", type: "int", description: "size", max: 10 },
    });
    let caught: ConfigError | undefined;
    try {
      parseConfig({ name: "r", options: required }, ["--size", "11"], {});
    } catch (err) {
      caught = err as ConfigError;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect(caught!.issues.map((i) => i.code)).toEqual([
      ConfigErrorCode.MissingRequired,
      ConfigErrorCode.InvalidValue,
    ]);
    expect(caught!.message).toContain(
      '--token: required (set --token value, or T_TOKEN=value, or token = "value"',
    );
    expect(caught!.message).toContain("--size: expected a whole number of at most 10, got 11");
  });

  it("runs an option's own check", () => {
    // Proves per-option `check` problems are reported like any other invalid value.
    const checked = defineOptions({
      members: {
        flag: "members",
        type: "int",
        default: 3,
        description: "members",
        check: (n: number) => (n % 2 === 1 ? undefined : `must be odd, got ${n}`),
      },
    });
    expect(() => parseConfig({ name: "c", options: checked }, ["--members", "4"], {})).toThrow(
      "--members: must be odd, got 4 (example: --members 3)",
    );
  });

  it("rejects option tables with duplicate or reserved names (programmer errors)", () => {
    // Proves mistakes in a daemon's own declaration fail loudly at start, not as odd operator errors.
    const parse = (table: Record<string, object>) =>
      parseConfig({ name: "d", options: defineOptions(table as never) }, [], {});
    const spec = (flag: string, toml?: string) => ({ flag, toml, type: "string", description: "d" });
    expect(() => parse({ a: spec("version") })).toThrow("flag --version is reserved or declared twice");
    expect(() => parse({ a: spec("x"), b: spec("x") })).toThrow("flag --x is reserved or declared twice");
    expect(() => parse({ a: spec("x", "k"), b: spec("y", "k") })).toThrow('TOML key "k" is declared twice');
    expect(() => parse({ a: spec("x", "authn"), b: spec("y", "authn.key") })).toThrow(
      'TOML key "authn" is both a value and the table of "authn.key"',
    );
  });
});
