// Runs a single-member chainfire test server (LocalReplicated in place of Raft) in its own process
// for the benchmark, printing its endpoint on the first stdout line.
import { startTestServer } from "../src/testing/test-server.js";

const server = await startTestServer({ store: { quotaBackendBytes: 8n * 1024n * 1024n * 1024n } });
process.stdout.write(`${server.endpoint}\n`);
process.on("SIGTERM", () => {
  void server.stop().then(() => process.exit(0));
});
