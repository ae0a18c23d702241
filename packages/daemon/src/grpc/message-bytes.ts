// Counts the bytes of the gRPC messages a service receives and sends, as etcd's codec counts them for
// etcd_network_client_grpc_{received,sent}_bytes_total: each message's encoded length, without the
// 5-byte length prefix, HTTP/2 framing or headers. The counting sits in the service definition's own
// (de)serialisers, so every path that uses them counts alike: grpc-js, the kit's lean path, and a
// JSON gateway that converts through the definition.
import type { ServiceDefinition } from "@grpc/grpc-js";

export interface MessageByteCounts {
  received: number;
  sent: number;
}

/** `definition` with each method's request decoding and response encoding adding to `counts`. */
export function countingMessageBytes<D extends ServiceDefinition>(
  definition: D,
  counts: MessageByteCounts,
): D {
  const counted: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(definition)) {
    const { requestDeserialize, responseSerialize } = method;
    counted[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        counts.received += bytes.length;
        return requestDeserialize(bytes);
      },
      responseSerialize: (value: unknown) => {
        const bytes = responseSerialize(value);
        counts.sent += bytes.length;
        return bytes;
      },
    };
  }
  return counted as D;
}
