/** `tributary tables …`: create, inspect, load and maintain Iceberg tables in the project's catalog. */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { tableIdentifierToString } from '../../catalog/identifier.ts';
import { parseDuration } from '../../core/config/units.ts';
import { TributaryError } from '../../errors.ts';
import { fileRelation, type InputFormat } from '../../iceberg/input-files.ts';
import { currentSchema } from '../../iceberg/metadata.ts';
import { updateSchema, withSchemaChanges } from '../../iceberg/operations/evolve.ts';
import { append } from '../../iceberg/operations/write.ts';
import {
  compact,
  expireSnapshots,
  ORPHAN_MIN_AGE_MS,
  removeOrphanFiles,
  rollbackTo,
} from '../../iceberg/operations/maintenance.ts';
import { buildSpec, describePartitionSpec, parsePartitionExpression } from '../../iceberg/partition-spec.ts';
import { assignFreshIds, parsePrimitiveType, parseSchemaJson } from '../../iceberg/schema.ts';
import type { SchemaChange } from '../../iceberg/schema-update.ts';
import { describeSortOrder, parseSortOrder } from '../../iceberg/sort-order.ts';
import type { IcebergType, Schema } from '../../iceberg/types.ts';
import type { CliContext } from '../context.ts';
import { formatTable } from '../output.ts';
import { tableArgument, withCatalog } from '../project-catalog.ts';
import { Progress } from '../progress.ts';

function typeName(type: IcebergType): string {
  if (typeof type === 'string') return type;
  if (type.type === 'list') return `list<${typeName(type.element)}>`;
  if (type.type === 'map') return `map<${typeName(type.key)}, ${typeName(type.value)}>`;
  return `struct<${type.fields.map((f) => `${f.name}: ${typeName(f.type)}`).join(', ')}>`;
}

function printSchema(schema: Schema): void {
  const identifiers = new Set(schema['identifier-field-ids'] ?? []);
  console.log(
    formatTable(
      ['id', 'column', 'type', 'required'],
      schema.fields.map((f) => [
        String(f.id),
        f.name + (identifiers.has(f.id) ? ' (key)' : ''),
        typeName(f.type),
        f.required ? 'yes' : 'no',
      ]),
    ),
  );
}

/** `column:value` as given to an option of `tables evolve` (the value after the last colon). */
function columnAnd(option: string, text: string, what: string): [string, string] {
  const at = text.lastIndexOf(':');
  if (at <= 0 || at === text.length - 1)
    throw new TributaryError('USAGE', `${option} ${text}: expected column:${what}`, {
      hint: `e.g. ${option} ${option === '--rename' ? 'amount:total' : 'amount:double'} (nested columns by dotted name: address.city)`,
    });
  return [text.slice(0, at).trim(), text.slice(at + 1).trim()];
}

interface EvolveOptions {
  widen: string[];
  optional: string[];
  drop: string[];
  rename: string[];
  add: string[];
  dryRun?: boolean;
}

/**
 * The changes the options of `tables evolve` ask for. Every column is named as it is before the command
 * (so they apply in this order: widen, make optional, drop, rename, then add, whose names may be freed by
 * a drop or a rename).
 */
function schemaChanges(options: EvolveOptions): SchemaChange[] {
  const changes: SchemaChange[] = [];
  for (const text of options.widen) {
    const [column, type] = columnAnd('--widen', text, 'type');
    changes.push({ kind: 'update-column-type', column, type: parsePrimitiveType(type, column) });
  }
  for (const column of options.optional) changes.push({ kind: 'make-column-optional', column });
  for (const column of options.drop) changes.push({ kind: 'delete-column', column });
  for (const text of options.rename) {
    const [column, newName] = columnAnd('--rename', text, 'new-name');
    changes.push({ kind: 'rename-column', column, newName });
  }
  for (const text of options.add) {
    const [name, type] = columnAnd('--add', text, 'type');
    const dot = name.lastIndexOf('.');
    changes.push({
      kind: 'add-column',
      ...(dot > 0 ? { parent: name.slice(0, dot) } : {}),
      name: dot > 0 ? name.slice(dot + 1) : name,
      type: parsePrimitiveType(type, name),
    });
  }
  if (changes.length === 0)
    throw new TributaryError('USAGE', 'tables evolve needs a change', {
      hint: 'give --widen, --optional, --drop, --rename or --add (see tributary tables evolve --help)',
    });
  return changes;
}

function describeChange(change: SchemaChange): string {
  switch (change.kind) {
    case 'update-column-type':
      return `widened ${change.column} to ${change.type}`;
    case 'make-column-optional':
      return `made ${change.column} optional`;
    case 'delete-column':
      return `dropped ${change.column}`;
    case 'rename-column':
      return `renamed ${change.column} to ${change.newName}`;
    case 'add-column':
      return `added ${change.parent ? `${change.parent}.` : ''}${change.name} ${typeName(change.type)}`;
    default:
      return change.kind;
  }
}

function parseProperties(values: readonly string[]): Record<string, string> {
  return Object.fromEntries(
    values.map((pair) => {
      const at = pair.indexOf('=');
      if (at <= 0) throw new TributaryError('USAGE', `--property ${pair}: expected key=value`);
      return [pair.slice(0, at), pair.slice(at + 1)];
    }),
  );
}

/**
 * A snapshot's record counts from its summary, as Iceberg keeps them: the records of its data files, and
 * the delete records (position and equality) of its delete files. Rows an upsert replaced or deleted are
 * in both until a compaction rewrites them, so the first is not the table's row count when the second is
 * not 0 — which only a scan tells, too costly for a listing.
 */
function recordCounts(summary: Record<string, string> | undefined): { records: string; deletes: string } {
  const deletes =
    Number(summary?.['total-position-deletes'] ?? 0) + Number(summary?.['total-equality-deletes'] ?? 0);
  return { records: summary?.['total-records'] ?? '0', deletes: String(deletes) };
}

const DELETES_NOTE =
  'records counts the rows of data files, deletes the rows delete files remove (an upsert replaced or deleted them): a table with deletes holds fewer rows than records until `tributary tables compact`; `tributary query "select count(*) from <table>"` counts them.';

export function registerTables(program: Command, context: () => CliContext): void {
  const tables = program.command('tables').description('Create, inspect, load and maintain Iceberg tables.');

  tables
    .command('list')
    .description('List the tables of every namespace, nested ones included (or of one).')
    .argument('[namespace]', 'only this namespace')
    .option('--json', 'print JSON')
    .action(async (namespace: string | undefined, options: { json?: boolean }) =>
      withCatalog(context().loadProject(), async (catalog) => {
        const identifiers = namespace
          ? await catalog.registry.listTables(namespace.split('.'))
          : await catalog.listAllTables();
        const rows: Array<{ table: string; snapshots: number; records: string; deletes: string }> = [];
        for (const identifier of identifiers) {
          const table = await catalog.loadTable(identifier);
          rows.push({
            table: tableIdentifierToString(identifier),
            snapshots: table.metadata.snapshots.length,
            ...recordCounts(table.currentSnapshot?.summary),
          });
        }
        if (options.json) console.log(JSON.stringify(rows, null, 2));
        else if (rows.length === 0) console.log('No tables yet: create one with `tributary tables create`.');
        else {
          console.log(
            formatTable(
              ['table', 'records', 'deletes', 'snapshots'],
              rows.map((r) => [r.table, r.records, r.deletes, String(r.snapshots)]),
            ),
          );
          if (rows.some((r) => r.deletes !== '0')) console.log(`\n${DELETES_NOTE}`);
        }
      }),
    );

  tables
    .command('show')
    .description('Show a table: location, schema, partitioning, sort order, properties and current snapshot.')
    .argument('<table>', 'namespace.table')
    .option('--json', 'print the table metadata as JSON')
    .action(async (name: string, options: { json?: boolean }) =>
      withCatalog(context().loadProject(), async (catalog) => {
        const table = await catalog.loadTable(tableArgument(name));
        if (options.json) {
          console.log(
            JSON.stringify(
              { metadataLocation: table.metadataLocation, ...table.metadata },
              (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v),
              2,
            ),
          );
          return;
        }
        const snapshot = table.currentSnapshot;
        console.log(`table       ${table.name}`);
        console.log(`location    ${table.location}`);
        console.log(`metadata    ${table.metadataLocation}`);
        console.log(`partition   ${describePartitionSpec(table.spec, table.schema) || 'unpartitioned'}`);
        console.log(`sort order  ${describeSortOrder(table.sortOrder, table.schema) || 'unsorted'}`);
        const counts = snapshot && recordCounts(snapshot.summary);
        console.log(
          `snapshot    ${snapshot ? `${snapshot['snapshot-id']} (${new Date(snapshot['timestamp-ms']).toISOString()}, ${counts!.records} records${counts!.deletes === '0' ? '' : `, ${counts!.deletes} deletes`})` : 'none'}`,
        );
        if (counts && counts.deletes !== '0') console.log(DELETES_NOTE);
        console.log('\nschema');
        printSchema(table.schema);
        const properties = Object.entries(table.metadata.properties);
        if (properties.length) console.log(`\nproperties\n${formatTable(['key', 'value'], properties)}`);
      }),
    );

  tables
    .command('snapshots')
    .description('List the snapshots of a table, oldest first.')
    .argument('<table>', 'namespace.table')
    .option('--json', 'print JSON')
    .action(async (name: string, options: { json?: boolean }) =>
      withCatalog(context().loadProject(), async (catalog) => {
        const table = await catalog.loadTable(tableArgument(name));
        const current = table.metadata['current-snapshot-id'];
        const rows = table.metadata.snapshots.map((s) => ({
          snapshotId: s['snapshot-id'].toString(),
          parentId: s['parent-snapshot-id']?.toString() ?? null,
          time: new Date(s['timestamp-ms']).toISOString(),
          operation: s.summary.operation,
          addedRecords: Number(s.summary['added-records'] ?? 0),
          totalRecords: Number(s.summary['total-records'] ?? 0),
          current: s['snapshot-id'] === current,
          summary: s.summary,
        }));
        if (options.json) console.log(JSON.stringify(rows, null, 2));
        else
          console.log(
            formatTable(
              ['snapshot', 'time', 'operation', 'added', 'total', ''],
              rows.map((r) => [
                r.snapshotId,
                r.time,
                r.operation,
                String(r.addedRecords),
                String(r.totalRecords),
                r.current ? 'current' : '',
              ]),
            ),
          );
      }),
    );

  tables
    .command('create')
    .description('Create a table from a JSON schema file, optionally partitioned and sorted.')
    .argument('<table>', 'namespace.table (the namespace is created if needed)')
    .requiredOption(
      '--schema <file>',
      'JSON schema: {"fields": [{"name": "id", "type": "long", "required": true}, …]}',
    )
    .option('--partition <expression>', 'partitioning, e.g. "day(ts), bucket(16, user_id)"')
    .option('--sort <expression>', 'sort order, e.g. "ts desc, id"')
    .option('--location <uri>', 'table location (default: under the warehouse)')
    .option('--property <key=value...>', 'table properties', [])
    .action(
      async (
        name: string,
        options: { schema: string; partition?: string; sort?: string; location?: string; property: string[] },
      ) => {
        const identifier = tableArgument(name);
        const schemaFile = path.resolve(options.schema);
        if (!existsSync(schemaFile))
          throw new TributaryError('USAGE', `schema file ${schemaFile} does not exist`);
        let json: unknown;
        try {
          json = JSON.parse(readFileSync(schemaFile, 'utf8'));
        } catch (cause) {
          throw new TributaryError(
            'INVALID_INPUT',
            `${schemaFile} is not valid JSON: ${(cause as Error).message}`,
            { cause },
          );
        }
        const schema = assignFreshIds(parseSchemaJson(json));
        const { spec } = buildSpec(parsePartitionExpression(options.partition ?? '', schema), 0, 999);
        const sortOrder = options.sort ? parseSortOrder(options.sort, schema) : undefined;
        const properties = parseProperties(options.property);
        await withCatalog(context().loadProject(), async (catalog) => {
          await catalog.createNamespaceIfAbsent(identifier.namespace);
          const table = await catalog.createTable(identifier, {
            schema,
            spec,
            sortOrder,
            properties,
            location: options.location,
          });
          console.log(`Created ${table.name} at ${table.location}`);
        });
      },
    );

  tables
    .command('append')
    .description('Append the rows of an NDJSON, CSV or Parquet file to a table, in one snapshot.')
    .argument('<table>', 'namespace.table')
    .argument('<file>', 'the data file')
    .option('--format <format>', 'ndjson, csv or parquet (default: from the file extension)')
    .action(async (name: string, file: string, options: { format?: string }) => {
      const filePath = path.resolve(file);
      if (!existsSync(filePath)) throw new TributaryError('USAGE', `file ${filePath} does not exist`);
      const format = options.format ?? formatOf(filePath);
      await withCatalog(context().loadProject(), async (catalog, engine) => {
        const table = await catalog.loadTable(tableArgument(name));
        const progress = new Progress(`appending ${path.basename(filePath)} to ${table.name}`);
        try {
          const source = await fileRelation(engine, format as InputFormat, filePath, table.schema);
          const result = await append(table, engine, source);
          progress.done(
            `appended ${result.addedRecords.toLocaleString('en-US')} rows to ${table.name} (snapshot ${result.snapshotId})`,
          );
        } catch (error) {
          progress.fail();
          throw error;
        }
      });
    });

  tables
    .command('drop')
    .description('Remove a table from the catalog; with --purge, delete its files too.')
    .argument('<table>', 'namespace.table')
    .option(
      '--purge',
      "also delete the table's data and metadata files (not those another table reaches or may own)",
    )
    .action(async (name: string, options: { purge?: boolean }) =>
      withCatalog(context().loadProject(), async (catalog) => {
        const identifier = tableArgument(name);
        const deleted = await catalog.dropTable(identifier, { purge: options.purge ?? false });
        console.log(
          `Dropped ${tableIdentifierToString(identifier)}${options.purge ? ` and deleted ${deleted} file(s)` : ''}.`,
        );
      }),
    );

  /** A repeatable option's values, in order. */
  const collect = (value: string, previous: string[]) => [...previous, value];
  tables
    .command('evolve')
    .description(
      'Change the schema of a table without rewriting its files: widen a number column, make a column optional, drop, rename or add columns. Columns are named as they are before the command; nested ones by dotted name (address.city).',
    )
    .argument('<table>', 'namespace.table')
    .option(
      '--widen <column:type>',
      'int→long, float→double, decimal(P,S)→decimal(P2,S) with P2 > P',
      collect,
      [],
    )
    .option('--optional <column>', 'let the column hold nulls', collect, [])
    .option('--drop <column>', 'drop the column (its data stays in old files, unread)', collect, [])
    .option('--rename <column:new-name>', 'rename the column', collect, [])
    .option(
      '--add <column:type>',
      'add an optional column, e.g. discount:decimal(12,2) or address.zip:string',
      collect,
      [],
    )
    .option('--dry-run', 'print the schema it would make, and change nothing')
    .action(async (name: string, options: EvolveOptions) =>
      withCatalog(context().loadProject(), async (catalog) => {
        const changes = schemaChanges(options);
        const table = await catalog.loadTable(tableArgument(name));
        const done = changes.map(describeChange).join('; ');
        if (options.dryRun) {
          const schema = currentSchema(withSchemaChanges(table.metadata, changes));
          console.log(`Would change ${table.name}: ${done}. Nothing was changed.\n`);
          printSchema(schema);
          return;
        }
        const schema = currentSchema((await updateSchema(table, changes)).metadata);
        console.log(`${table.name} is at schema ${schema['schema-id']}: ${done}.\n`);
        printSchema(schema);
      }),
    );

  tables
    .command('rollback')
    .description('Make an earlier snapshot of the table current again.')
    .argument('<table>', 'namespace.table')
    .argument('<snapshot-id>', 'a snapshot in the current history (see `tables snapshots`)')
    .action(async (name: string, snapshotId: string) =>
      withCatalog(context().loadProject(), async (catalog) => {
        if (!/^\d+$/.test(snapshotId))
          throw new TributaryError('USAGE', `"${snapshotId}" is not a snapshot id`, {
            hint: 'snapshot ids are integers',
          });
        const table = await catalog.loadTable(tableArgument(name));
        await rollbackTo(table, BigInt(snapshotId));
        console.log(`${table.name} is at snapshot ${snapshotId}.`);
      }),
    );

  tables
    .command('expire')
    .description('Expire old snapshots and delete the files only they reached.')
    .argument('<table>', 'namespace.table')
    .option('--older-than <duration>', 'expire snapshots older than this, e.g. 7d (default: 5d)')
    .option('--retain-last <n>', 'always keep the last N snapshots', '1')
    .action(async (name: string, options: { olderThan?: string; retainLast: string }) =>
      withCatalog(context().loadProject(), async (catalog) => {
        const age = options.olderThan === undefined ? undefined : parseDuration(options.olderThan);
        if (options.olderThan !== undefined && age === undefined) {
          throw new TributaryError('USAGE', `--older-than ${options.olderThan}: not a duration`, {
            hint: 'write e.g. 12h or 7d',
          });
        }
        const retainLast = Number(options.retainLast);
        if (!Number.isInteger(retainLast) || retainLast < 1)
          throw new TributaryError('USAGE', '--retain-last must be a whole number ≥ 1');
        const table = await catalog.loadTable(tableArgument(name));
        const result = await expireSnapshots(table, {
          olderThanMs: age === undefined ? undefined : Date.now() - age,
          retainLast,
        });
        console.log(
          `Expired ${result.expiredSnapshots} snapshot(s) of ${table.name}; deleted ${result.deletedFiles} file(s).`,
        );
      }),
    );

  tables
    .command('remove-orphan-files')
    .description(
      'Delete files under a table that no snapshot or metadata of it (or of a table sharing its location) reaches: left by writes that failed or never committed.',
    )
    .argument('<table>', 'namespace.table')
    .option('--older-than <duration>', 'only files older than this, at least 1d', '3d')
    .option('--dry-run', 'list the files without deleting them')
    .action(async (name: string, options: { olderThan: string; dryRun?: boolean }) => {
      const project = context().loadProject();
      await withCatalog(project, async (catalog) => {
        const age = parseDuration(options.olderThan);
        if (age === undefined || age < ORPHAN_MIN_AGE_MS) {
          throw new TributaryError(
            'USAGE',
            `--older-than ${options.olderThan}: must be a duration of at least 1d`,
            {
              hint: 'a write in progress has files no snapshot reaches yet: keep the age above the longest write (e.g. 3d)',
            },
          );
        }
        const table = await catalog.loadTable(tableArgument(name));
        const removed = await removeOrphanFiles(table, {
          olderThanMs: Date.now() - age,
          dryRun: options.dryRun === true,
          neighbours: await catalog.tablesOverlapping(table),
          guard: catalog.sweepGuard,
        });
        for (const file of removed) console.log(file);
        console.log(
          options.dryRun
            ? `${removed.length} orphan file(s) under ${table.name} would be deleted (dry run).`
            : `Deleted ${removed.length} orphan file(s) under ${table.name}.`,
        );
      });
    });

  tables
    .command('compact')
    .description(
      'Rewrite small files (and files with deletes) into files of the target size; rows unchanged.',
    )
    .argument('<table>', 'namespace.table')
    .action(async (name: string) =>
      withCatalog(context().loadProject(), async (catalog, engine) => {
        const table = await catalog.loadTable(tableArgument(name));
        const result = await compact(table, engine);
        console.log(
          result.rewrittenFiles
            ? `Rewrote ${result.rewrittenFiles} file(s) of ${table.name} into ${result.addedFiles}; removed ${result.removedDeleteFiles} delete file(s).`
            : `${table.name} has nothing to compact.`,
        );
      }),
    );
}

function formatOf(file: string): string {
  const lower = file.toLowerCase();
  if (/\.(ndjson|jsonl|json)(\.gz)?$/.test(lower)) return 'ndjson';
  if (/\.csv(\.gz)?$/.test(lower)) return 'csv';
  if (lower.endsWith('.parquet')) return 'parquet';
  throw new TributaryError('USAGE', `cannot tell the format of ${file} from its name`, {
    hint: 'pass --format ndjson, csv or parquet',
  });
}
