import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Client, Metadata, type ServiceError, credentials } from "@grpc/grpc-js";
import { iamv1 } from "@photoncloud/iam-api";
import { createDevCa, issueDevCertificate } from "@photoncloud/iam-authn";
import { Command, Option } from "commander";

interface GlobalOptions {
  endpoint: string;
  writeOut: "table" | "json";
  cacert?: string;
  cert?: string;
  key?: string;
}

type Out = (text: string) => void;
type ClientCtor = new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => Client;

/** Renders an answer as JSON (64-bit values as strings) or as an aligned table. */
function render(value: unknown, format: "table" | "json"): string {
  if (format === "json")
    return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v), 2);
  const obj = value as Record<string, unknown>;
  const listKey = Object.keys(obj).find((k) => Array.isArray(obj[k]));
  const rows = (listKey ? obj[listKey] : [obj]) as Record<string, unknown>[];
  if (rows.length === 0) return "(none)";
  const cols = Object.keys(rows[0]!).filter((c) => typeof rows[0]![c] !== "object" || rows[0]![c] === null);
  const cell = (v: unknown) => (v === undefined || v === null ? "" : String(v));
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]) =>
    vals
      .map((v, i) => v.padEnd(widths[i]!))
      .join("  ")
      .trimEnd();
  return [line(cols.map((c) => c.toUpperCase())), ...rows.map((r) => line(cols.map((c) => cell(r[c]))))].join(
    "\n",
  );
}

function channelCredentials(g: GlobalOptions) {
  if (!g.endpoint.startsWith("https://")) return credentials.createInsecure();
  const read = (p?: string) => (p ? readFileSync(p) : null);
  return credentials.createSsl(read(g.cacert), read(g.key), read(g.cert));
}

/** Calls one unary method; admin token (IAM_ADMIN_TOKEN / PHOTON_IAM_ADMIN_TOKEN) or IAM_TOKEN as bearer. */
function call<Res>(g: GlobalOptions, ctor: ClientCtor, method: string, request: object): Promise<Res> {
  const address = g.endpoint.replace(/^https?:\/\//, "");
  const client = new ctor(address, channelCredentials(g));
  const md = new Metadata();
  const bearer = process.env.IAM_ADMIN_TOKEN || process.env.PHOTON_IAM_ADMIN_TOKEN || process.env.IAM_TOKEN;
  if (bearer) md.set("authorization", `Bearer ${bearer}`);
  type Unary = (
    req: object,
    md: Metadata,
    opts: object,
    cb: (err: ServiceError | null, res: Res) => void,
  ) => unknown;
  const fn = (client as unknown as Record<string, Unary>)[method]!;
  return new Promise<Res>((resolve, reject) => {
    fn.call(client, request, md, { deadline: Date.now() + 15_000 }, (err: ServiceError | null, res: Res) => {
      client.close();
      if (err) reject(err);
      else resolve(res);
    });
  });
}

function addPrincipalCommands(program: Command, run: Runner) {
  const p = program.command("principal").description("users and service accounts");
  p.command("create <id>")
    .addOption(new Option("--kind <kind>", "user or service").choices(["user", "service"]).default("service"))
    .option("--display-name <name>", "display name", "")
    .action((id, o) =>
      run(iamv1.PrincipalsClient, "createPrincipal", { id, kind: o.kind, displayName: o.displayName }),
    );
  p.command("get <id>").action((id) => run(iamv1.PrincipalsClient, "getPrincipal", { id }));
  p.command("list").action(() => run(iamv1.PrincipalsClient, "listPrincipals", {}));
  p.command("enable <id>").action((id) =>
    run(iamv1.PrincipalsClient, "setPrincipalEnabled", { id, enabled: true }),
  );
  p.command("disable <id>").action((id) =>
    run(iamv1.PrincipalsClient, "setPrincipalEnabled", { id, enabled: false }),
  );
  p.command("bump-not-before <id>")
    .description("refuse every token issued to the principal before now")
    .action((id) => run(iamv1.PrincipalsClient, "bumpNotBefore", { id }));
}

function addKeyCommands(program: Command, run: Runner) {
  const k = program.command("key").description("token signing keys");
  k.command("add")
    .addOption(
      new Option("--alg <alg>", "algorithm the key pins").choices(["EdDSA", "ES256"]).default("EdDSA"),
    )
    .option("--pem-file <path>", "import this PEM private key instead of generating one")
    .action((o) =>
      run(iamv1.SigningKeysClient, "addKey", {
        alg: o.alg,
        privateKeyPem: o.pemFile ? readFileSync(o.pemFile, "utf8") : "",
      }),
    );
  for (const [name, method] of [
    ["activate", "activateKey"],
    ["revoke-population", "revokeKeyPopulation"],
    ["retire", "retireKey"],
    ["purge", "purgeKey"],
  ] as const)
    k.command(`${name} <kid>`).action((kid) => run(iamv1.SigningKeysClient, method, { kid }));
  k.command("list").action(() => run(iamv1.SigningKeysClient, "listKeys", {}));
}

function addTokenCommands(program: Command, run: Runner) {
  const t = program.command("token").description("internal tokens");
  t.command("issue")
    .option("--subject <principal>", "issue as admin for this principal")
    .option("--access-key-id <id>", "authenticate with this access key; secret from IAM_SECRET_ACCESS_KEY")
    .option("--client-certificate", "authenticate with the TLS client certificate (--cert/--key)")
    .option("--ttl <seconds>", "token lifetime", "0")
    .option("--audience <aud>", "audience", "")
    .action((o) => {
      const auth = o.accessKeyId
        ? { accessKey: { accessKeyId: o.accessKeyId, secret: process.env.IAM_SECRET_ACCESS_KEY ?? "" } }
        : o.clientCertificate
          ? { clientCertificate: true }
          : { adminSubject: o.subject ?? "" };
      return run(iamv1.TokensClient, "issueToken", {
        ...auth,
        ttlSeconds: Number(o.ttl),
        audience: o.audience,
      });
    });
  t.command("validate <token>").action((token) => run(iamv1.TokensClient, "validateToken", { token }));
  t.command("revoke [token]")
    .option("--jti <jti>", "revoke by token id instead")
    .action((token, o) =>
      run(iamv1.TokensClient, "revokeToken", { token: token ?? "", jti: o.jti ?? "", expiresAtSeconds: 0n }),
    );
  t.command("jwks").action(() => run(iamv1.TokensClient, "getJwks", {}));
}

function addCredentialCommands(program: Command, run: Runner) {
  const c = program.command("credential").description("access keys");
  c.command("create <principal>").action((principalId) =>
    run(iamv1.CredentialsClient, "createCredential", { principalId }),
  );
  c.command("get-secret <accessKeyId>").action((accessKeyId) =>
    run(iamv1.CredentialsClient, "getCredentialSecret", { accessKeyId }),
  );
  c.command("list [principal]").action((principalId) =>
    run(iamv1.CredentialsClient, "listCredentials", { principalId: principalId ?? "" }),
  );
  c.command("revoke <accessKeyId>").action((accessKeyId) =>
    run(iamv1.CredentialsClient, "revokeCredential", { accessKeyId }),
  );
}

function addMtlsCommands(program: Command, run: Runner) {
  const r = program.command("trust-root").description("CA certificates client certificates may chain to");
  r.command("add <id> <pemFile>").action((id, f) =>
    run(iamv1.MtlsIdentitiesClient, "addTrustRoot", { id, certificatePem: readFileSync(f, "utf8") }),
  );
  r.command("remove <id>").action((id) => run(iamv1.MtlsIdentitiesClient, "removeTrustRoot", { id }));
  r.command("list").action(() => run(iamv1.MtlsIdentitiesClient, "listTrustRoots", {}));
  const i = program.command("identity").description("URI SAN / SPIFFE ID → principal mappings");
  i.command("map <uriSan> <principal>").action((uriSan, principalId) =>
    run(iamv1.MtlsIdentitiesClient, "mapIdentity", { uriSan, principalId }),
  );
  i.command("unmap <uriSan>").action((uriSan) =>
    run(iamv1.MtlsIdentitiesClient, "unmapIdentity", { uriSan }),
  );
  i.command("list").action(() => run(iamv1.MtlsIdentitiesClient, "listIdentities", {}));
}

function addPkiCommands(program: Command, out: Out) {
  const p = program.command("pki").description("development PKI (RSA, node-forge)");
  p.command("init")
    .requiredOption("--dir <dir>", "where to write ca.crt and ca.key")
    .option("--cn <name>", "CA common name", "PhotonCloud dev CA")
    .action((o) => {
      mkdirSync(o.dir, { recursive: true });
      const ca = createDevCa(o.cn);
      writeFileSync(join(o.dir, "ca.crt"), ca.certPem);
      writeFileSync(join(o.dir, "ca.key"), ca.keyPem, { mode: 0o600 });
      out(`wrote ${join(o.dir, "ca.crt")} and ${join(o.dir, "ca.key")}`);
    });
  p.command("issue <name>")
    .requiredOption("--dir <dir>", "the CA directory (from pki init); <name>.crt/.key are written here")
    .option("--uri <uri>", "the one URI SAN (SPIFFE ID) of a client identity")
    .option("--dns <names...>", "DNS SANs (server certificates)")
    .option("--ip <addresses...>", "IP SANs (server certificates)")
    .option("--days <n>", "validity in days", "90")
    .action((name, o) => {
      const ca = {
        certPem: readFileSync(join(o.dir, "ca.crt"), "utf8"),
        keyPem: readFileSync(join(o.dir, "ca.key"), "utf8"),
      };
      const cert = issueDevCertificate(ca, {
        commonName: name,
        uriSan: o.uri,
        dnsNames: o.dns ?? [],
        ipAddresses: o.ip ?? [],
        validDays: Number(o.days),
      });
      writeFileSync(join(o.dir, `${name}.crt`), cert.certPem);
      writeFileSync(join(o.dir, `${name}.key`), cert.keyPem, { mode: 0o600 });
      out(`wrote ${join(o.dir, `${name}.crt`)} and ${join(o.dir, `${name}.key`)}`);
    });
}

type Runner = (ctor: ClientCtor, method: string, request: object) => Promise<void>;

/**
 * Key IDs (JWK thumbprints) and token IDs are base64url, so one in 64 begins with "-" and is parsed as
 * an option (or an option's cluster). After a usage error, such a token before any "--" gets a hint:
 * operands after "--" are never taken for options.
 */
function hintLeadingDash(argv: readonly string[], err: Out): void {
  const end = argv.indexOf("--");
  const id = argv.slice(2, end === -1 ? undefined : end).find((a) => /^-[^-][A-Za-z0-9_-]{15,}$/.test(a));
  if (id !== undefined)
    err(`iamctl: an ID that begins with "-" must come after "--", for example: iamctl key retire -- ${id}`);
}

/** Runs iamctl with `argv` (process.argv form); returns the exit code. */
export async function runIamctl(
  argv: string[],
  out: Out = console.log,
  err: Out = console.error,
): Promise<number> {
  const program = new Command("iamctl")
    .description("PhotonCloud iam CLI; admin token from IAM_ADMIN_TOKEN or PHOTON_IAM_ADMIN_TOKEN")
    .option("--endpoint <url>", "iam gRPC endpoint", process.env.IAMCTL_ENDPOINT ?? "127.0.0.1:8543")
    .addOption(
      new Option("-w, --write-out <format>", "output format").choices(["table", "json"]).default("table"),
    )
    .option("--cacert <file>", "CA bundle for https:// endpoints")
    .option("--cert <file>", "client certificate (mTLS)")
    .option("--key <file>", "client private key (mTLS)")
    // Set before the subcommands are added, so they inherit it: commander's own messages (usage
    // errors, help) go to the writers given, like every other line iamctl prints.
    .configureOutput({
      writeOut: (s) => out(s.replace(/\n$/, "")),
      writeErr: (s) => err(s.replace(/\n$/, "")),
    })
    .exitOverride();
  const run: Runner = async (ctor, method, request) => {
    const g = program.opts<GlobalOptions>();
    out(render(await call(g, ctor, method, request), g.writeOut));
  };
  addPrincipalCommands(program, run);
  addKeyCommands(program, run);
  addTokenCommands(program, run);
  addCredentialCommands(program, run);
  addMtlsCommands(program, run);
  addPkiCommands(program, out);
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && code.startsWith("commander.")) {
      if (code === "commander.helpDisplayed") return 0;
      hintLeadingDash(argv, err);
      return 2;
    }
    err(`iamctl: ${(e as ServiceError).details ?? (e as Error).message}`);
    return 1;
  }
}
