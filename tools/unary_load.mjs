// One reading per call: MeterService.IngestReading driven by @grpc/grpc-js, keeping a fixed
// number of calls in flight for a fixed time. The client is Node so that it costs the two cores
// little next to the services (a Python client would measure itself).
//
// Usage: node tools/unary_load.mjs --target HOST:PORT [--in-flight 10] [--seconds 20]
//        [--chargers 10000] [--first-second EPOCH_SECONDS]
// Prints one JSON line: {"in_flight", "calls", "errors", "seconds", "per_s", "p50_ms", "p99_ms"}.
// Every call sends a new (meter_id, timestamp): charger n % chargers at first-second + n / chargers.

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const { values } = parseArgs({
  options: {
    target: { type: "string" },
    "in-flight": { type: "string", default: "10" },
    seconds: { type: "string", default: "20" },
    chargers: { type: "string", default: "10000" },
    "first-second": { type: "string", default: String(Math.floor(Date.now() / 1000) - 86400) },
  },
});
if (!values.target) {
  console.error("--target HOST:PORT is required");
  process.exit(2);
}
const inFlight = Number(values["in-flight"]);
const seconds = Number(values.seconds);
const chargers = Number(values.chargers);
const firstSecond = Number(values["first-second"]);

const protos = join(dirname(fileURLToPath(import.meta.url)), "..", "protos");
const definition = protoLoader.loadSync("energy/meter/v1/meter_service.proto", {
  includeDirs: [protos],
  keepCase: true,
  longs: Number,
});
const { MeterService } = grpc.loadPackageDefinition(definition).energy.meter.v1;
const client = new MeterService(values.target, grpc.credentials.createInsecure());

const latencies = [];
let sent = 0;
let errors = 0;
let firstError = null;
let stopAt = 0;

function call() {
  const n = sent++;
  const reading = {
    meter_id: `CHG-UNARY-${n % chargers}`,
    kwh_consumed_ac: 0.25,
    voltage: 230,
    timestamp: { seconds: firstSecond + Math.floor(n / chargers), nanos: 0 },
  };
  const started = process.hrtime.bigint();
  return new Promise((resolve) => {
    client.IngestReading({ reading }, { deadline: Date.now() + 30000 }, (error) => {
      if (error) {
        errors++;
        firstError ??= error.message;
      } else {
        latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
      }
      resolve();
    });
  });
}

async function lane() {
  while (performance.now() < stopAt) await call();
}

await new Promise((resolve, reject) =>
  client.waitForReady(Date.now() + 10000, (error) => (error ? reject(error) : resolve())),
);
// Warm-up: connections, the servers' threads and the writers' prepared state.
stopAt = performance.now() + 1000;
await Promise.all(Array.from({ length: inFlight }, lane));
latencies.length = 0;
errors = 0;
const started = performance.now();
stopAt = started + seconds * 1000;
await Promise.all(Array.from({ length: inFlight }, lane));
const elapsed = (performance.now() - started) / 1000;
client.close();

if (!latencies.length) { console.error("no call succeeded:", firstError); process.exit(1); }
latencies.sort((a, b) => a - b);
const at = (q) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * q))];
console.log(
  JSON.stringify({
    in_flight: inFlight,
    calls: latencies.length,
    errors,
    first_error: firstError,
    seconds: Number(elapsed.toFixed(3)),
    per_s: Math.round(latencies.length / elapsed),
    p50_ms: Number(at(0.5).toFixed(2)),
    p99_ms: Number(at(0.99).toFixed(2)),
  }),
);
