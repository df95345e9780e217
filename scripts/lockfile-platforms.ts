/**
 * Keeps package-lock.json installable with `npm ci` everywhere. The npm registry this project is built
 * against serves only the linux-x64 build of DuckDB's native bindings, so `npm install` leaves the other
 * platforms' optional packages out of the lock file — and `npm ci` then refuses the lock as out of sync.
 * This adds the missing platform entries (with their os/cpu/libc, so npm skips them on other machines).
 * Run it after `npm install` changes the lock file: `npm run lockfile`.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

interface LockEntry {
  version?: string;
  optionalDependencies?: Record<string, string>;
  [key: string]: unknown;
}

const file = path.resolve(import.meta.dirname, '..', 'package-lock.json');
const lock = JSON.parse(readFileSync(file, 'utf8')) as { packages: Record<string, LockEntry> };

// Platform triples DuckDB publishes, by package-name suffix.
const platforms: Record<string, { os: string[]; cpu: string[]; libc?: string[] }> = {
  'darwin-arm64': { os: ['darwin'], cpu: ['arm64'] },
  'darwin-x64': { os: ['darwin'], cpu: ['x64'] },
  'linux-arm64': { os: ['linux'], cpu: ['arm64'], libc: ['glibc'] },
  'linux-arm64-musl': { os: ['linux'], cpu: ['arm64'], libc: ['musl'] },
  'linux-x64': { os: ['linux'], cpu: ['x64'], libc: ['glibc'] },
  'win32-arm64': { os: ['win32'], cpu: ['arm64'] },
  'win32-x64': { os: ['win32'], cpu: ['x64'] },
};

let added = 0;
for (const entry of Object.values(lock.packages)) {
  for (const [name, version] of Object.entries(entry.optionalDependencies ?? {})) {
    const key = `node_modules/${name}`;
    const suffix = Object.keys(platforms).find((p) => name.endsWith(`-${p}`));
    if (lock.packages[key] || !suffix || !name.startsWith('@duckdb/')) continue;
    lock.packages[key] = { version, ...platforms[suffix], license: 'MIT', optional: true };
    added++;
  }
}
const sorted = Object.fromEntries(
  Object.entries(lock.packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : 1)),
);
writeFileSync(file, JSON.stringify({ ...lock, packages: sorted }, null, 2) + '\n');
console.log(
  added ? `added ${added} platform entries to package-lock.json` : 'package-lock.json: nothing to add',
);
