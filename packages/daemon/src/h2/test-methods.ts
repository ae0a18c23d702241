// Method definitions for the HTTP/2 tests: bytes in, bytes out (no protobuf), so a test's service
// is a plain object of these.

const raw = (b: Buffer) => b;

/** A method `/<service>/<name>` whose messages are the raw bytes. */
export function rawMethod(service: string, name: string, requestStream: boolean, responseStream: boolean) {
  return {
    path: `/${service}/${name}`,
    requestStream,
    responseStream,
    requestSerialize: raw,
    requestDeserialize: raw,
    responseSerialize: raw,
    responseDeserialize: raw,
    originalName: name,
  };
}
