/**
 * `tributary doctor` for a postgres_cdc source: what logical replication needs, each with a fix. Reads
 * only; never changes anything.
 */
import type pg from 'pg';
import { formatByteSize } from '../../core/config/units.ts';
import type { CheckResult } from '../../core/doctor.ts';
import type { NamedCheck } from '../source.ts';
import { resolvedNames, type PostgresCdcConfig } from './config.ts';
import { connect, quoteIdent, quoteTable } from './connection.ts';

const GiB = 1024 ** 3;

/** Types stored out of line when large (TOAST): the ones whose unchanged values an update may omit. */
const TOASTABLE = `t.typlen = -1`;

export async function checkPostgresCdc(
  name: string,
  config: PostgresCdcConfig,
  projectRoot: string,
): Promise<NamedCheck[]> {
  const { slot, publication } = resolvedNames(name, config);
  let client: pg.Client;
  try {
    client = await connect(config, projectRoot, { applicationName: 'tributary-doctor' });
  } catch (error) {
    return [
      {
        name: 'connection',
        result: {
          status: 'fail',
          detail: (error as Error).message,
          fix: 'check host, port, database, user, password and sslmode in the source file, and that PostgreSQL runs',
        },
      },
    ];
  }
  const checks: NamedCheck[] = [
    {
      name: 'connection',
      result: { status: 'pass', detail: `${config.host}:${config.port}/${config.database}` },
    },
  ];
  const add = (checkName: string, result: CheckResult) => checks.push({ name: checkName, result });
  const one = async <T extends pg.QueryResultRow>(sql: string, params: unknown[] = []) =>
    (await client.query<T>(sql, params)).rows[0];
  try {
    const wal = await one<{ wal_level: string }>('show wal_level');
    add(
      'wal_level',
      wal?.wal_level === 'logical'
        ? { status: 'pass', detail: 'logical' }
        : {
            status: 'fail',
            detail: `wal_level is ${wal?.wal_level}; logical replication needs logical`,
            fix: 'ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL',
          },
    );

    const role = await one<{ rolreplication: string; rolsuper: string }>(
      'select rolreplication::text, rolsuper::text from pg_roles where rolname = current_user',
    );
    add(
      'replication privilege',
      role?.rolreplication === 'true' || role?.rolsuper === 'true'
        ? {
            status: 'pass',
            detail: `${config.user} has ${role.rolsuper === 'true' ? 'SUPERUSER' : 'REPLICATION'}`,
          }
        : {
            status: 'fail',
            detail: `${config.user} may not start replication`,
            fix: `ALTER ROLE ${quoteIdent(config.user)} REPLICATION`,
          },
    );

    const tables = (
      await client.query<{ t: string; ident: string; pk: string; readable: string; toastable: string }>(
        `select n.nspname || '.' || c.relname as t, c.relreplident::text as ident,
            exists (select 1 from pg_index i where i.indrelid = c.oid and i.indisprimary)::text as pk,
            has_table_privilege(c.oid, 'SELECT')::text as readable,
            exists (select 1 from pg_attribute a join pg_type t on t.oid = a.atttypid
                     where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped and ${TOASTABLE})::text as toastable
           from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where c.relkind in ('r', 'p') and n.nspname || '.' || c.relname = any($1::text[])`,
        [config.tables],
      )
    ).rows;
    const found = new Map(tables.map((t) => [t.t, t]));
    const absent = config.tables.filter((t) => !found.has(t));
    const keyless = tables.filter((t) => t.pk !== 'true').map((t) => t.t);
    const unreadable = tables.filter((t) => t.readable !== 'true').map((t) => t.t);
    add(
      'tables',
      absent.length
        ? {
            status: 'fail',
            detail: `no table ${absent.join(', ')}`,
            fix: 'create it, or fix `tables` (schema.table)',
          }
        : keyless.length
          ? {
              status: 'fail',
              detail: `${keyless.join(', ')} without a primary key`,
              fix: 'add a primary key: changes are keyed by it',
            }
          : unreadable.length
            ? {
                status: 'fail',
                detail: `${config.user} cannot read ${unreadable.join(', ')}`,
                fix: `GRANT SELECT ON ${unreadable.map(quoteTable).join(', ')} TO ${quoteIdent(config.user)}`,
              }
            : { status: 'pass', detail: `${tables.length} table(s) with primary keys` },
    );

    const pub = await one<{ n: string }>(
      'select count(*)::text as n from pg_publication where pubname = $1',
      [publication],
    );
    // What making or extending the publication takes, which the source does when create_publication
    // allows: CREATE on the database, ownership of the tables (and of the publication), or a superuser.
    // As text, like every answer here (the connection reads types as text).
    const rights = await one<{ superuser: string; can_create: string; owns_publication: string | null }>(
      `select r.rolsuper::text as superuser,
         has_database_privilege(current_database(), 'CREATE')::text as can_create,
         (select pg_has_role(p.pubowner, 'USAGE') from pg_publication p where p.pubname = $1)::text as owns_publication
       from pg_roles r where r.rolname = current_user`,
      [publication],
    );
    const notOwned = (
      await client.query<{ t: string }>(
        `select n.nspname || '.' || c.relname as t from pg_class c join pg_namespace n on n.oid = c.relnamespace
         where n.nspname || '.' || c.relname = any($1::text[]) and not pg_has_role(c.relowner, 'USAGE')`,
        [config.tables],
      )
    ).rows.map((r) => r.t);
    const asOwner = (statement: string) =>
      `as the tables' owner (or a superuser), run ${statement}; or let ${config.user} own the tables${pub?.n === '0' ? ' and GRANT CREATE ON DATABASE to it' : ''}`;
    const cannotMake = (needs: string[], statement: string): CheckResult => ({
      status: 'fail',
      detail: `${config.user} cannot ${pub?.n === '0' ? 'create' : 'extend'} publication ${publication}: ${needs.join('; ')}`,
      fix: asOwner(statement),
    });
    const lacks = (creating: boolean): string[] =>
      rights?.superuser === 'true'
        ? []
        : [
            ...(creating && rights?.can_create !== 'true' ? ['no CREATE privilege on the database'] : []),
            ...(!creating && rights?.owns_publication === 'false' ? ['it does not own the publication'] : []),
            ...(notOwned.length ? [`it does not own ${notOwned.join(', ')}`] : []),
          ];
    if (pub?.n === '0') {
      const create = `CREATE PUBLICATION ${quoteIdent(publication)} FOR TABLE ${config.tables.map(quoteTable).join(', ')}`;
      add(
        'publication',
        config.create_publication
          ? lacks(true).length
            ? cannotMake(lacks(true), create)
            : { status: 'pass', detail: `${publication} does not exist yet; the source creates it` }
          : {
              status: 'fail',
              detail: `publication ${publication} does not exist`,
              fix: `CREATE PUBLICATION ${quoteIdent(publication)} FOR TABLE ${config.tables.map(quoteTable).join(', ')}`,
            },
      );
    } else {
      const members = new Set(
        (
          await client.query<{ t: string }>(
            `select schemaname || '.' || tablename as t from pg_publication_tables where pubname = $1`,
            [publication],
          )
        ).rows.map((r) => r.t),
      );
      const missing = config.tables.filter((t) => !members.has(t));
      const alter = `ALTER PUBLICATION ${quoteIdent(publication)} ADD TABLE ${missing.map(quoteTable).join(', ')}`;
      add(
        'publication',
        missing.length === 0
          ? { status: 'pass', detail: `${publication} has every table` }
          : config.create_publication && lacks(false).length
            ? cannotMake(lacks(false), alter)
            : {
                status: config.create_publication ? 'warn' : 'fail',
                detail: `${publication} lacks ${missing.join(', ')}${config.create_publication ? ' (the source adds them)' : ''}`,
                fix: alter,
              },
      );
    }

    const nothing = tables.filter((t) => t.ident === 'n').map((t) => t.t);
    const partial = tables
      .filter((t) => t.ident !== 'f' && t.ident !== 'n' && t.toastable === 'true')
      .map((t) => t.t);
    add(
      'replica identity',
      nothing.length
        ? {
            status: 'fail',
            detail: `${nothing.join(', ')} has REPLICA IDENTITY NOTHING: updates and deletes cannot be published`,
            fix: `ALTER TABLE ${quoteTable(nothing[0]!)} REPLICA IDENTITY FULL (or DEFAULT)`,
          }
        : partial.length && !config.replica_identity_full
          ? {
              status: 'warn',
              detail: `${partial.join(', ')} can hold TOASTed values without REPLICA IDENTITY FULL: an update that leaves one unchanged does not carry it, and the source reads it back from the table (the current value, not the one at the change)`,
              fix: `ALTER TABLE ${quoteTable(partial[0]!)} REPLICA IDENTITY FULL, or set replica_identity_full: true`,
            }
          : {
              status: 'pass',
              detail: config.replica_identity_full
                ? 'FULL (set by the source)'
                : tables
                    .map(
                      (t) =>
                        `${t.t}: ${{ d: 'default', f: 'full', i: 'index', n: 'nothing' }[t.ident] ?? t.ident}`,
                    )
                    .join(', '),
            },
    );

    const slotRow = await one<{
      plugin: string;
      active_pid: string | null;
      wal_status: string | null;
      lag: string | null;
      safe: string | null;
      app: string | null;
    }>(
      `select s.plugin, s.active_pid::text, s.wal_status, (pg_current_wal_lsn() - s.confirmed_flush_lsn)::text as lag,
              s.safe_wal_size::text as safe, a.application_name as app
         from pg_replication_slots s left join pg_stat_activity a on a.pid = s.active_pid
        where s.slot_name = $1`,
      [slot],
    );
    if (!slotRow) {
      add('slot', { status: 'pass', detail: `${slot} does not exist yet; the source creates it` });
    } else {
      add(
        'slot',
        slotRow.wal_status === 'lost'
          ? {
              status: 'fail',
              detail: `${slot} was invalidated: PostgreSQL removed WAL it needed; changes were lost`,
              fix: `SELECT pg_drop_replication_slot('${slot}'); then start with snapshot_mode: when_needed`,
            }
          : slotRow.plugin !== 'pgoutput'
            ? {
                status: 'fail',
                detail: `${slot} uses plugin ${slotRow.plugin}`,
                fix: 'set another slot_name',
              }
            : { status: 'pass', detail: `${slot} (pgoutput, WAL ${slotRow.wal_status ?? 'reserved'})` },
      );
      add(
        'slot holder',
        slotRow.active_pid
          ? {
              status: 'pass',
              detail: `active: backend pid ${slotRow.active_pid}${slotRow.app ? ` (${slotRow.app})` : ''}`,
            }
          : {
              status: 'warn',
              detail: `${slot} is not being read`,
              fix: `start the source: tributary cdc run ${name} (or tributary up)`,
            },
      );
      const lag = Number(slotRow.lag ?? 0);
      const safe = slotRow.safe === null ? undefined : Number(slotRow.safe);
      add(
        'slot lag',
        safe !== undefined && safe < GiB
          ? {
              status: 'warn',
              detail: `${formatByteSize(lag)} behind; only ${formatByteSize(Math.max(0, safe))} more before max_slot_wal_keep_size invalidates the slot`,
              fix: 'check that the source and the pipelines reading its topic run and commit',
            }
          : lag > 10 * GiB
            ? {
                status: 'warn',
                detail: `${formatByteSize(lag)} behind the current WAL position`,
                fix: 'check that the source and its pipelines run and commit',
              }
            : { status: 'pass', detail: `${formatByteSize(lag)} behind the current WAL position` },
      );
    }

    const keep = await one<{ setting: string }>(
      `select setting from pg_settings where name = 'max_slot_wal_keep_size'`,
    );
    add(
      'max_slot_wal_keep_size',
      keep?.setting === '-1'
        ? {
            status: 'warn',
            detail: 'unlimited: a slot nobody reads keeps WAL until the disk is full',
            fix: "ALTER SYSTEM SET max_slot_wal_keep_size = '50GB'; SELECT pg_reload_conf(); (size it for the longest outage to ride out)",
          }
        : { status: 'pass', detail: `${keep?.setting ?? '?'} MB` },
    );
    return checks;
  } catch (error) {
    add('queries', {
      status: 'fail',
      detail: (error as Error).message,
      fix: 'check that the role may read the catalog (pg_replication_slots needs pg_monitor or superuser for all columns)',
    });
    return checks;
  } finally {
    await client.end().catch(() => undefined);
  }
}
