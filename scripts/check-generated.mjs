// Fails when `gen/` is not exactly what `buf generate` makes from `proto/`:
// generated code is never edited by hand, and a proto change must ship with
// its regenerated code.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const scratch = mkdtempSync(join(tmpdir(), "caracal-gen-"));

function listFiles(dir) {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)))
    .sort();
}

try {
  execFileSync("buf", ["generate", "--output", scratch], { cwd: root, stdio: "inherit" });
  const fresh = join(scratch, "gen");
  const committed = join(root, "gen");
  const freshFiles = listFiles(fresh);
  const committedFiles = listFiles(committed);
  const stale = [
    ...freshFiles.filter((f) => !committedFiles.includes(f)).map((f) => `missing: gen/${f}`),
    ...committedFiles.filter((f) => !freshFiles.includes(f)).map((f) => `not generated: gen/${f}`),
    ...freshFiles
      .filter((f) => committedFiles.includes(f))
      .filter((f) => !readFileSync(join(fresh, f)).equals(readFileSync(join(committed, f))))
      .map((f) => `changed: gen/${f}`),
  ];
  if (stale.length > 0) {
    console.error(`gen/ is stale; run \`npm run generate\` and commit the result:\n  ${stale.join("\n  ")}`);
    process.exitCode = 1;
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
