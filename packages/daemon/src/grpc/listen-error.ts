// A listener could not be opened (address in use, permission, unknown host).

export class ListenError extends Error {
  override readonly name = "ListenError";
  readonly code = "LISTEN_FAILED";
  constructor(
    readonly url: string,
    reason: string,
    what: string,
  ) {
    super(`${what}: cannot listen on ${url}: ${reason}`);
  }
}
