#!/usr/bin/env node
// The `caracal` command. Caracal ships as TypeScript and runs it through tsx,
// so the launcher registers tsx's loader before importing the entry point.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../services/main.ts");
process.exitCode = await main(process.argv.slice(2));
