/**
 * Enforces the direction of dependencies between the modules of src/ (docs/architecture.md): the table
 * below says which folders each folder may import. `errors.ts` and `did-you-mean.ts` are leaves every
 * folder may use.
 * Run by `npm run lint`; exits 1 and names each import that goes the wrong way.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const SRC = path.resolve(import.meta.dirname, '..', 'src');

const allowed: Record<string, readonly string[]> = {
  storage: [],
  log: [],
  iceberg: ['storage'],
  catalog: ['iceberg', 'storage'],
  core: ['log'],
  query: ['catalog', 'iceberg', 'storage'],
  sources: ['core', 'log'],
  transforms: ['core', 'log'],
  sinks: ['core', 'log', 'catalog', 'iceberg', 'storage'],
  server: [
    'core',
    'log',
    'catalog',
    'iceberg',
    'storage',
    'query',
    'sources',
    'transforms',
    'sinks',
    'components.ts',
  ],
  cli: [
    'core',
    'log',
    'catalog',
    'iceberg',
    'storage',
    'query',
    'sources',
    'transforms',
    'sinks',
    'server',
    'components.ts',
  ],
};
const leaves = new Set(['errors.ts', 'did-you-mean.ts']);
// The composition root (src/components.ts) wires components together: only cli/ and server/ import it.
allowed['components.ts'] = [
  'core',
  'log',
  'catalog',
  'iceberg',
  'storage',
  'query',
  'sources',
  'transforms',
  'sinks',
];

function* files(dir: string): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* files(full);
    else if (entry.name.endsWith('.ts')) yield full;
  }
}

const IMPORT =
  /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;
const problems: string[] = [];
for (const file of files(SRC)) {
  const from = path.relative(SRC, file).split(path.sep)[0] ?? '';
  if (leaves.has(from)) continue;
  const text = readFileSync(file, 'utf8');
  for (const match of text.matchAll(IMPORT)) {
    const specifier = match[1] ?? match[2] ?? '';
    if (!specifier.startsWith('.')) continue;
    const target = path.relative(SRC, path.resolve(path.dirname(file), specifier));
    if (target.startsWith('..')) {
      problems.push(`${path.relative(process.cwd(), file)}: imports ${specifier}, outside src/`);
      continue;
    }
    const to = target.split(path.sep)[0] ?? '';
    if (to === from || leaves.has(to)) continue;
    if (!(allowed[from] ?? []).includes(to)) {
      problems.push(
        `${path.relative(process.cwd(), file)}: ${from}/ may not import ${to}/ (${specifier}); allowed: ${(allowed[from] ?? []).join(', ') || 'nothing'}`,
      );
    }
  }
}
if (problems.length) {
  console.error(`Module layering violated (see scripts/check-layers.ts):\n${problems.join('\n')}`);
  process.exit(1);
}
console.log('layers: ok');
