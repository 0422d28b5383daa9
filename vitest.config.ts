import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["**/*.test.ts"],
    exclude: ["node_modules/**", "gen/**"],
    // Suites create their own databases and streams, so files may run in
    // parallel; PGlite's cold start and real servers need generous timeouts.
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // `.ci/run` reads this report to print the closing "N passed, N failed".
    reporters: ["default", ["json", { outputFile: ".vitest-report.json" }]],
  },
});
