/**
 * Global setup and teardown of `npm test`: services started by the test run are stopped at its end, unless
 * TRIBUTARY_KEEP_SERVICES=1. Services started by hand (`npm run services -- start <name>`) are left alone.
 */
import { stopService } from './services/harness.ts';
import { services } from './services/index.ts';

export async function globalTeardown(): Promise<void> {
  if (process.env.TRIBUTARY_KEEP_SERVICES === '1') return;
  for (const definition of Object.values(services)) {
    await stopService(definition as Parameters<typeof stopService>[0], true);
  }
}
