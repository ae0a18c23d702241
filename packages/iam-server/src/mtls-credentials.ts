import { readFileSync } from "node:fs";
import { type ServerCredentials, experimental } from "@grpc/grpc-js";

type CaListener = experimental.CaCertificateUpdateListener;
type IdListener = experimental.IdentityCertificateUpdateListener;

/**
 * A certificate provider whose CA list follows iam's run-time trust roots. The TLS layer requests a
 * client certificate but does not reject on its own: IssueToken judges the presented certificate
 * against the trust roots and identity mappings current at that moment, so roots can change without a
 * restart. A connection without a client certificate still works for token and admin calls.
 */
class RuntimeTrustProvider implements experimental.CertificateProvider {
  private caListeners = new Set<CaListener>();
  private ca: Buffer;

  constructor(
    private readonly identity: { certificate: Buffer; privateKey: Buffer },
    initialCa: Buffer,
  ) {
    this.ca = initialCa;
  }

  setCa(pems: string[]): void {
    if (pems.length === 0) return; // keep the last list: TLS needs at least one CA to request certificates
    this.ca = Buffer.from(pems.join("\n"));
    for (const l of this.caListeners) l({ caCertificate: this.ca });
  }

  // grpc-js registers its watcher only after adding these listeners, so the first update must be
  // delivered asynchronously or the server never learns that its credentials are loaded.
  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    setImmediate(() => listener({ caCertificate: this.ca }));
  }
  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }
  addIdentityCertificateListener(listener: IdListener): void {
    setImmediate(() => listener(this.identity));
  }
  removeIdentityCertificateListener(): void {}
}

/** Server credentials for https:// gRPC URLs that request (but do not require) client certificates. */
export function runtimeMtlsCredentials(
  certFile: string,
  keyFile: string,
  trustRootPems: string[],
): { credentials: ServerCredentials; setTrustRoots: (pems: string[]) => void } {
  const certificate = readFileSync(certFile);
  const provider = new RuntimeTrustProvider(
    { certificate, privateKey: readFileSync(keyFile) },
    trustRootPems.length > 0 ? Buffer.from(trustRootPems.join("\n")) : certificate,
  );
  return {
    credentials: experimental.createCertificateProviderServerCredentials(provider, provider, false),
    setTrustRoots: (pems) => provider.setCa(pems),
  };
}
