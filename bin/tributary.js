#!/usr/bin/env node
// Launcher for the `tributary` command. Tributary needs Node.js 24 or later; where the node on PATH is
// older, it re-runs itself with the Node.js 24 that `npm ci` installed into node_modules.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  const bundled = fileURLToPath(new URL('../node_modules/node/bin/node', import.meta.url));
  if (!existsSync(bundled)) {
    console.error(
      `error: Tributary needs Node.js 24 or later (this is ${process.version}); run \`npm ci\` in the Tributary checkout or install Node.js 24`,
    );
    process.exit(2);
  }
  const child = spawn(bundled, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: 'inherit',
  });
  // SIGTERM sent to this process (kill, a supervisor) is passed on, so the real one stops cleanly. Ctrl-C
  // reaches both processes already (one process group): this one only waits for the other to finish.
  for (const signal of ['SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal));
  process.on('SIGINT', () => undefined);
  child.on('exit', (code, signal) => process.exit(code ?? (signal === 'SIGKILL' ? 137 : 1)));
} else {
  const { main } = await import('../src/cli/main.ts');
  process.exitCode = await main(process.argv.slice(2));
}
