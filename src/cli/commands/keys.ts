/**
 * `tributary keys …`: API keys for the HTTP server, stored (as salted hashes) in the catalog database so
 * that every server instance shares them. A key is printed once, when created.
 */
import type { Command } from 'commander';
import { TributaryError } from '../../errors.ts';
import { KEY_ROLES, type ApiKey, type KeyRole } from '../../server/keys.ts';
import { openKeyStore } from '../../server/start.ts';
import type { CliContext } from '../context.ts';
import { color, formatTable } from '../output.ts';

function collect(value: string, previous: string[] = []): string[] {
  return [
    ...previous,
    ...value
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  ];
}

function row(key: ApiKey): string[] {
  const tables = key.role === 'ingest' ? '' : key.tables.join(',');
  return [key.id, key.name, key.role, key.streams.join(','), tables, key.createdAt, key.revokedAt ?? ''];
}

export function registerKeys(program: Command, context: () => CliContext): void {
  const keys = program.command('keys').description('API keys of the HTTP server: create, list, revoke.');

  keys
    .command('create')
    .description('Create an API key and print it once (only a salted hash is stored).')
    .option(
      '--stream <name>',
      'ingest and admin keys: a stream the key may send to (repeat, or comma-separate; "*" for all)',
      collect,
    )
    .option(
      '--table <name>',
      'query and admin keys: a table the key may read, namespace.table or namespace.* (repeat, or comma-separate; "*" for all; admin keys default to all)',
      collect,
    )
    .requiredOption('--name <name>', 'what the key is for, e.g. "web-shop" (unique among active keys)')
    .option('--role <role>', `${KEY_ROLES.join(', ')}`, 'ingest')
    .option('--json', 'print JSON')
    .action(
      async (options: {
        stream?: string[];
        table?: string[];
        name: string;
        role: string;
        json?: boolean;
      }) => {
        if (!(KEY_ROLES as readonly string[]).includes(options.role)) {
          throw new TributaryError('USAGE', `--role ${options.role} is not a role`, {
            hint: `use one of ${KEY_ROLES.join(', ')}`,
          });
        }
        const project = context().loadProject();
        const configured = Object.keys(project.platform.streams ?? {});
        const streams = options.stream ?? [];
        const unknown = streams.filter((s) => s !== '*' && !configured.includes(s));
        const store = await openKeyStore(project);
        try {
          const { key, secret } = await store.create({
            name: options.name,
            role: options.role as KeyRole,
            streams,
            tables: options.table ?? [],
          });
          if (options.json) {
            console.log(JSON.stringify({ ...key, key: secret }, null, 2));
          } else {
            const scope = [
              ...(key.streams.length ? [`streams ${key.streams.join(', ')}`] : []),
              ...(key.role === 'ingest' ? [] : [`tables ${key.tables.join(', ')}`]),
            ];
            console.log(`Created key ${key.id} "${key.name}" (role ${key.role}, ${scope.join('; ')}):\n`);
            console.log(`  ${secret}\n`);
            console.log('Store it now: Tributary keeps only a salted hash and cannot show it again.');
          }
          if (unknown.length) {
            console.error(
              `${color('yellow', 'warning')} no stream named ${unknown.join(', ')} in tributary.yaml yet (streams: ${configured.join(', ') || 'none'})`,
            );
          }
        } finally {
          await store.close();
        }
      },
    );

  keys
    .command('list')
    .description('List API keys (never the keys themselves).')
    .option('--all', 'include revoked keys')
    .option('--json', 'print JSON')
    .action(async (options: { all?: boolean; json?: boolean }) => {
      const store = await openKeyStore(context().loadProject());
      try {
        const list = await store.list({ includeRevoked: options.all ?? false });
        if (options.json) console.log(JSON.stringify(list, null, 2));
        else if (list.length === 0)
          console.log('No API keys. Create one with `tributary keys create --stream <s> --name <n>`.');
        else
          console.log(
            formatTable(['id', 'name', 'role', 'streams', 'tables', 'created', 'revoked'], list.map(row)),
          );
      } finally {
        await store.close();
      }
    });

  keys
    .command('revoke')
    .description('Revoke an API key by id or name; servers refuse it within 10 seconds.')
    .argument('<key>', 'the key id (from `keys list`) or its name')
    .action(async (idOrName: string) => {
      const store = await openKeyStore(context().loadProject());
      try {
        const revoked = await store.revoke(idOrName);
        if (!revoked) {
          throw new TributaryError('USAGE', `no active key with id or name "${idOrName}"`, {
            hint: 'see `tributary keys list`',
          });
        }
        console.log(`Revoked key ${revoked.id} "${revoked.name}".`);
      } finally {
        await store.close();
      }
    });
}
