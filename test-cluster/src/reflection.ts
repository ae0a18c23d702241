// A gRPC server-reflection client (grpc.reflection.v1): which services a running member publishes,
// and each service's methods with their request/response types and streaming flags. This is how the
// ops proof records the API surface an operator can actually call, rather than what the sources say.
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import {
  type Client,
  credentials,
  loadPackageDefinition,
  type ServiceClientConstructor,
} from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";

const require = createRequire(import.meta.url);

export interface MethodSurface {
  readonly name: string;
  readonly inputType: string;
  readonly outputType: string;
  readonly clientStreaming: boolean;
  readonly serverStreaming: boolean;
}

export interface ServiceSurface {
  readonly service: string;
  readonly file: string;
  readonly methods: MethodSurface[];
}

interface ReflectionReply {
  list_services_response?: { service: { name: string }[] };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_code: number; error_message: string };
}

type Stream = NodeJS.EventEmitter & { write(m: unknown): void; end(): void };

function reflectionCtor(): ServiceClientConstructor {
  const protoFile = join(
    dirname(require.resolve("@grpc/reflection")),
    "..",
    "proto",
    "grpc",
    "reflection",
    "v1",
    "reflection.proto",
  );
  const pkg = loadPackageDefinition(loadSync(protoFile, { keepCase: true, defaults: true })) as unknown as {
    grpc: { reflection: { v1: { ServerReflection: ServiceClientConstructor } } };
  };
  return pkg.grpc.reflection.v1.ServerReflection;
}

/** One request/reply exchange on a fresh reflection stream. */
function ask(client: Client, request: unknown, deadlineMs: number): Promise<ReflectionReply> {
  return new Promise((resolve, reject) => {
    const info = (client as unknown as Record<string, (o: unknown) => Stream>).ServerReflectionInfo!;
    const call = info.call(client, { deadline: Date.now() + deadlineMs });
    call.on("data", (reply: ReflectionReply) => {
      call.end();
      if (reply.error_response) reject(new Error(`reflection: ${reply.error_response.error_message}`));
      else resolve(reply);
    });
    call.on("error", reject);
    call.write(request);
  });
}

/** Every service the server at `target` (host:port) publishes, with its methods. */
export async function reflectSurface(target: string, deadlineMs = 5000): Promise<ServiceSurface[]> {
  const Ctor = reflectionCtor();
  const client = new Ctor(target, credentials.createInsecure());
  try {
    const listed = await ask(client, { list_services: "*" }, deadlineMs);
    const names = (listed.list_services_response?.service ?? []).map((s) => s.name).sort();
    const surfaces: ServiceSurface[] = [];
    for (const service of names) {
      const reply = await ask(client, { file_containing_symbol: service }, deadlineMs);
      surfaces.push(describeService(service, reply.file_descriptor_response?.file_descriptor_proto ?? []));
    }
    return surfaces;
  } finally {
    client.close();
  }
}

function describeService(service: string, files: readonly Buffer[]): ServiceSurface {
  for (const bytes of files) {
    const file = fromBinary(FileDescriptorProtoSchema, bytes);
    for (const s of file.service) {
      if (`${file.package}.${s.name}` !== service) continue;
      const methods = s.method.map((m) => ({
        name: m.name,
        inputType: m.inputType.replace(/^\./, ""),
        outputType: m.outputType.replace(/^\./, ""),
        clientStreaming: m.clientStreaming,
        serverStreaming: m.serverStreaming,
      }));
      return { service, file: file.name, methods };
    }
  }
  return { service, file: "(descriptor not returned)", methods: [] };
}
