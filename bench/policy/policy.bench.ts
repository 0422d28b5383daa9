/**
 * bench/policy: in-process `CompiledPolicySet.evaluate` on the Cedar engine
 * for a realistic set (bench/policy/realistic-set.ts: 50 policies in 8
 * documents; 150 applications with labels and 50 resources). Each request
 * names one application (with its labels) and one resource of those 200
 * entities, as the STS passes them; the engine never sees all 200 at once.
 *
 * Compiles the set once (and prints how long that took), draws a fixed pool
 * of requests from a seeded PRNG, evaluates the whole pool once to check that
 * nothing errors and that allow, deny and step-up all occur (printing that
 * pass's mean as the cold cost), warms up, then times every `evaluate` call
 * one after another, cycling through the pool. Prints decisions/s (calls over
 * the wall time of the timed loop), p50 and p99 against the target
 * (p50 ≤ 150 µs), the decision mix, this process's CPU time per decision
 * (steadier than wall time when the machine is busy) and each decision's p50.
 * These figures are with the engine's answer cache off, so every decision is a
 * trip into Cedar. Then the same requests with the cache on (each request
 * repeated: what an entry saves), and with slicing off (what slicing saves).
 *
 *   npx tsx bench/policy/policy.bench.ts [iterations=50000]
 */
import { loadavg } from "node:os";
import { CedarEngine } from "../../services/policy/cedar-engine.js";
import type { PolicyDecision } from "../../services/policy/policy-engine.js";
import { applications, drawRequests, realisticPolicySource, resources } from "./realistic-set.js";

const ITERATIONS = Number(process.argv[2] ?? 50_000);
const WARMUP = 5_000;
const POOL_SIZE = 10_000;
const SEED = 20_260_101;
const TARGET_P50_MICROS = 150;
const DECISIONS: readonly PolicyDecision[] = ["allow", "deny", "step_up_required"];

console.log(`node ${process.version}, load average ${loadavg().map((load) => load.toFixed(2)).join(" ")}`);

const compileStarted = performance.now();
const set = new CedarEngine({ cacheSize: 0 }).compile(realisticPolicySource);
const compileMs = performance.now() - compileStarted;
const policies = set.policyIds.length;
const entities = applications.length + resources.length;
console.log(`compile: ${policies} policies in ${realisticPolicySource.documents.length} documents: ${compileMs.toFixed(1)} ms`);

const pool = drawRequests(POOL_SIZE, SEED);
const firstPassStarted = performance.now();
const poolOutcomes = pool.map((request) => set.evaluate(request));
const firstPassMicros = ((performance.now() - firstPassStarted) * 1000) / pool.length;
const failed = poolOutcomes.findIndex((outcome) => outcome.errors.length > 0);
if (failed !== -1) {
  throw new Error(`request ${failed} of the pool errored (fix the set, not the bench): ${poolOutcomes[failed]!.errors.join("; ")}`);
}
const poolMix = mixOf(poolOutcomes.map((outcome) => outcome.decision));
if (DECISIONS.some((decision) => poolMix.get(decision) === 0)) {
  throw new Error(`the request pool must yield every decision, got ${describeMix(poolMix, pool.length)}`);
}
console.log(`request pool: ${pool.length} requests (seed ${SEED}): ${describeMix(poolMix, pool.length)}`);
// Includes whatever the engine builds lazily on first sight of a request shape.
console.log(`first pass over the pool (cold): mean ${firstPassMicros.toFixed(1)} µs per decision`);

for (let i = 0; i < WARMUP; i++) set.evaluate(pool[i % pool.length]!);

const micros = new Float64Array(ITERATIONS);
const decisions: PolicyDecision[] = new Array(ITERATIONS);
const cpuBefore = process.cpuUsage();
const started = performance.now();
for (let i = 0; i < ITERATIONS; i++) {
  const request = pool[i % pool.length]!;
  const t0 = performance.now();
  const outcome = set.evaluate(request);
  micros[i] = (performance.now() - t0) * 1000;
  decisions[i] = outcome.decision;
}
const seconds = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpuBefore);

const p50 = quantile(micros, 0.5);
console.log(
  `policy evaluate: ${policies} policies, ${entities} entities, ${ITERATIONS} decisions: ` +
    `${(ITERATIONS / seconds).toFixed(0)} decisions/s, p50 ${p50.toFixed(1)} µs, p99 ${quantile(micros, 0.99).toFixed(1)} µs ` +
    `(target p50 ≤ ${TARGET_P50_MICROS} µs: ${p50 <= TARGET_P50_MICROS ? "met" : "NOT met"})`,
);
console.log(`decision mix: ${describeMix(mixOf(decisions), ITERATIONS)}`);
// Wall-clock latency grows when other processes take the CPU; this does much less.
console.log(`process CPU over the timed loop: ${((cpu.user + cpu.system) / ITERATIONS).toFixed(1)} µs per decision`);
const p50ByDecision = DECISIONS.map((decision) => {
  const own = micros.filter((_, i) => decisions[i] === decision);
  return `${decision} ${quantile(own, 0.5).toFixed(1)} µs`;
});
console.log(`p50 by decision: ${p50ByDecision.join(", ")}`);
// The same requests with the answer cache on: a first pass fills it, the second is answered from it.
const cached = new CedarEngine().compile(realisticPolicySource);
const CACHED_ITERATIONS = Math.min(ITERATIONS, pool.length);
const missMicros = new Float64Array(CACHED_ITERATIONS);
const hitMicros = new Float64Array(CACHED_ITERATIONS);
for (const into of [missMicros, hitMicros]) {
  for (let i = 0; i < CACHED_ITERATIONS; i++) {
    const t0 = performance.now();
    cached.evaluate(pool[i]!);
    into[i] = (performance.now() - t0) * 1000;
  }
}
console.log(
  `with the answer cache, ${CACHED_ITERATIONS} distinct requests: first sight p50 ${quantile(missMicros, 0.5).toFixed(1)} µs; ` +
    `the same request again p50 ${quantile(hitMicros, 0.5).toFixed(1)} µs, p99 ${quantile(hitMicros, 0.99).toFixed(1)} µs`,
);

// The same requests with slicing off: every policy and the whole request go to Cedar.
const whole = new CedarEngine({ slicing: false, cacheSize: 0 }).compile(realisticPolicySource);
const WHOLE_ITERATIONS = Math.min(ITERATIONS, 5_000);
for (let i = 0; i < 500; i++) whole.evaluate(pool[i]!);
const wholeMicros = new Float64Array(WHOLE_ITERATIONS);
for (let i = 0; i < WHOLE_ITERATIONS; i++) {
  const t0 = performance.now();
  whole.evaluate(pool[i % pool.length]!);
  wholeMicros[i] = (performance.now() - t0) * 1000;
}
const wholeP50 = quantile(wholeMicros, 0.5);
console.log(
  `without slicing (every policy, whole request), ${WHOLE_ITERATIONS} decisions: p50 ${wholeP50.toFixed(1)} µs, ` +
    `p99 ${quantile(wholeMicros, 0.99).toFixed(1)} µs; slicing is ${(wholeP50 / p50).toFixed(2)}× faster at p50`,
);
console.log(`load average ${loadavg().map((load) => load.toFixed(2)).join(" ")}`);

function mixOf(list: readonly PolicyDecision[]): Map<PolicyDecision, number> {
  const mix = new Map(DECISIONS.map((decision) => [decision, 0]));
  for (const decision of list) mix.set(decision, mix.get(decision)! + 1);
  return mix;
}

function describeMix(mix: ReadonlyMap<PolicyDecision, number>, total: number): string {
  return DECISIONS.map((decision) => `${decision} ${mix.get(decision)} (${((100 * mix.get(decision)!) / total).toFixed(1)} %)`).join(", ");
}

/** The `q` quantile (nearest rank, lower) of `values`; sorts a copy. */
function quantile(values: Float64Array, q: number): number {
  const sorted = values.slice().sort();
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}
