/**
 * `npm run services -- <start|stop|status|env> [name…]`: the test services by hand. Started this way they
 * stay up across test runs (tests reuse them) until stopped.
 */
import { ensureService, readState, stopService, type ServiceDefinition } from '../test/services/harness.ts';
import { services, type ServiceName } from '../test/services/index.ts';

const [action, ...names] = process.argv.slice(2);
const chosen = (names.length ? names : Object.keys(services)) as ServiceName[];
for (const name of chosen) {
  if (!(name in services)) {
    console.error(`unknown service "${name}": choose from ${Object.keys(services).join(', ')}`);
    process.exit(2);
  }
}

for (const name of chosen) {
  const definition = services[name] as ServiceDefinition<unknown>;
  switch (action) {
    case 'start': {
      const info = await ensureService(definition, false);
      console.log(`${name}: ${JSON.stringify(info)}`);
      break;
    }
    case 'stop':
      console.log(`${name}: ${(await stopService(definition, false)) ? 'stopped' : 'not running'}`);
      break;
    case 'status': {
      const state = readState(name);
      const running = state ? await definition.isRunning(state.info) : false;
      console.log(`${name}: ${running ? `running ${JSON.stringify(state?.info)}` : 'not running'}`);
      break;
    }
    default:
      console.error('usage: npm run services -- <start|stop|status> [kafka|postgres|pyiceberg|s3 …]');
      process.exit(2);
  }
}
