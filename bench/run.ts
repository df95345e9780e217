/** `npm run bench -- <name> [args…]`: runs bench/<name>.ts and appends its row to bench/RESULTS.md. */
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { machine, recordResult, type Benchmark } from './harness.ts';

const [name, ...args] = process.argv.slice(2);
const available = readdirSync(import.meta.dirname)
  .filter((f) => f.endsWith('.ts') && !['run.ts', 'harness.ts'].includes(f))
  .map((f) => f.replace(/\.ts$/, ''));
if (!name || !existsSync(path.join(import.meta.dirname, `${name}.ts`))) {
  console.error(`usage: npm run bench -- <name> [args…]; benchmarks: ${available.join(', ')}`);
  process.exit(2);
}
const { default: benchmark } = (await import(`./${name}.ts`)) as { default: Benchmark };
console.log(`${benchmark.name}: ${benchmark.description}\nmachine: ${machine()}`);
const result = await benchmark.run(args);
const row = recordResult(benchmark, result, ['npm run bench --', name, ...args].join(' '));
console.log(row.trim());
