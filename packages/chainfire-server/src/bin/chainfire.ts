#!/usr/bin/env node
// The chainfire daemon: etcd's flags (see --help), --config-file for the same keys in TOML.
import { main } from "../daemon/chainfire-daemon.js";

await main();
