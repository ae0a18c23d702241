import { X509Certificate } from "node:crypto";
import { CertRejection, CertificateRejectedError, KeyInputError } from "./errors.js";

/** A certificate that authenticated: the principal it maps to and the URI SAN that mapped it. */
export interface CertificateIdentity {
  principalId: string;
  uriSan: string;
  trustRootId: string;
  fingerprint256: string;
}

/** Most intermediates a presented chain may carry before the trust root. */
const chainDepthMax = 4;

function reject(code: CertRejection, message: string): never {
  throw new CertificateRejectedError(code, message);
}

/** The URI entries of a certificate's subjectAltName, as node:crypto renders it (quoted when escaped). */
export function uriSans(cert: X509Certificate): string[] {
  const san = cert.subjectAltName;
  if (!san) return [];
  const out: string[] = [];
  const entry = /(?:^|, )([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)/g;
  for (const m of san.matchAll(entry)) {
    if (m[1] !== "URI") continue;
    const value = m[2]!;
    out.push(value.startsWith('"') ? (JSON.parse(value) as string) : value);
  }
  return out;
}

function parse(certificate: string | Buffer): X509Certificate {
  try {
    return new X509Certificate(certificate);
  } catch {
    return reject(CertRejection.Malformed, "client certificate cannot be parsed");
  }
}

/**
 * Trust roots and URI SAN (SPIFFE ID) → principal mappings, both changeable at run time so that an
 * overlap-and-cutover rotation needs no restart: while both roots/mappings exist both certificates
 * authenticate; once the old one is removed the old certificate is refused on its next use.
 */
export class MtlsIdentityVerifier {
  private readonly roots = new Map<string, X509Certificate>();
  private readonly mappings = new Map<string, string>();

  addTrustRoot(id: string, pem: string): { id: string; subject: string; fingerprint256: string } {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(pem);
    } catch {
      throw new KeyInputError(`trust root ${id}: not a PEM certificate`);
    }
    if (!cert.ca)
      throw new KeyInputError(`trust root ${id}: certificate is not a CA (basicConstraints CA:TRUE)`);
    this.roots.set(id, cert);
    return { id, subject: cert.subject, fingerprint256: cert.fingerprint256 };
  }

  removeTrustRoot(id: string): boolean {
    return this.roots.delete(id);
  }

  trustRoots(): { id: string; subject: string; fingerprint256: string; pem: string }[] {
    return [...this.roots].map(([id, c]) => ({
      id,
      subject: c.subject,
      fingerprint256: c.fingerprint256,
      pem: c.toString(),
    }));
  }

  mapIdentity(uriSan: string, principalId: string): void {
    if (!/^[a-z][a-z0-9+.-]*:/i.test(uriSan))
      throw new KeyInputError(`identity ${uriSan}: must be a URI such as spiffe://domain/path`);
    this.mappings.set(uriSan, principalId);
  }

  unmapIdentity(uriSan: string): boolean {
    return this.mappings.delete(uriSan);
  }

  identities(): { uriSan: string; principalId: string }[] {
    return [...this.mappings].map(([uriSan, principalId]) => ({ uriSan, principalId }));
  }

  /**
   * Authenticates a client certificate (PEM or DER) with optional intermediates, against the current
   * trust roots and mappings. Throws CertificateRejectedError naming the failed rule.
   */
  authenticate(
    certificate: string | Buffer,
    intermediates: (string | Buffer)[] = [],
    nowMs = Date.now(),
  ): CertificateIdentity {
    const leaf = parse(certificate);
    if (leaf.ca) reject(CertRejection.IsCa, "a CA certificate cannot authenticate as a client");
    const chain = intermediates.slice(0, chainDepthMax).map(parse);
    const trustRootId = this.verifyChain(leaf, chain, nowMs);
    const uris = uriSans(leaf);
    if (uris.length !== 1)
      reject(
        CertRejection.UriSanCount,
        `client certificate must carry exactly one URI SAN (it has ${uris.length})`,
      );
    const uriSan = uris[0]!;
    const principalId = this.mappings.get(uriSan);
    if (principalId === undefined)
      reject(CertRejection.Unmapped, `identity ${uriSan} is not mapped to a principal`);
    return { principalId, uriSan, trustRootId, fingerprint256: leaf.fingerprint256 };
  }

  private verifyChain(leaf: X509Certificate, intermediates: X509Certificate[], nowMs: number): string {
    let current = leaf;
    for (let depth = 0; depth <= intermediates.length; depth += 1) {
      checkValidity(current, nowMs);
      for (const [id, root] of this.roots)
        if (current.checkIssued(root) && current.verify(root.publicKey)) {
          checkValidity(root, nowMs);
          return id;
        }
      const parent = intermediates.find((c) => c.ca && current.checkIssued(c) && current.verify(c.publicKey));
      if (!parent) break;
      current = parent;
    }
    return reject(
      CertRejection.UntrustedIssuer,
      "client certificate does not chain to a configured trust root",
    );
  }
}

function checkValidity(cert: X509Certificate, nowMs: number): void {
  if (nowMs < Date.parse(cert.validFrom) || nowMs > Date.parse(cert.validTo))
    reject(
      CertRejection.Expired,
      `certificate ${cert.subject.replace(/\n/g, ",")} is outside its validity period`,
    );
}
