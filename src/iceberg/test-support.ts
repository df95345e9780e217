/**
 * Tables for src/iceberg's tests, without a catalog package (src/iceberg may not import src/catalog): the
 * smallest catalog the commit protocol needs is one table's current metadata location, swapped by
 * compare-and-swap, as the SQL catalog does in a database.
 */
import path from 'node:path';
import { TributaryError } from '../errors.ts';
import { fileLocationOf, type Storage } from '../storage/index.ts';
import type { Engine } from './duckdb.ts';
import { newTableMetadata } from './metadata.ts';
import type { NativeFiles } from './native-files.ts';
import { buildSpec, parsePartitionExpression } from './partition-spec.ts';
import { assignFreshIds, parseSchemaJson } from './schema.ts';
import { readMetadataFile, Table, writeMetadataFile, type TableOperations } from './table.ts';

export interface TestTableOptions {
  readonly storage: Storage;
  /** How DuckDB reaches the files; default: in place. */
  readonly files?: NativeFiles;
  /** The table's directory. */
  readonly directory: string;
  readonly identifier: { readonly namespace: readonly string[]; readonly name: string };
  /** Schema fields as in the metadata JSON; ids are assigned afresh. */
  readonly fields: readonly unknown[];
  readonly identifierFields?: readonly string[];
  /** A partition expression such as `day(ts)`; unpartitioned by default. */
  readonly partition?: string;
  readonly properties?: Record<string, string>;
}

export interface TestTable {
  readonly table: Table;
  /** Another Table object on the same catalog entry, as a second writer would load it. */
  readonly load: () => Promise<Table>;
}

export async function createTestTable(options: TestTableOptions): Promise<TestTable> {
  const { storage, identifier } = options;
  const schema = assignFreshIds(
    parseSchemaJson({ fields: options.fields, 'identifier-fields': options.identifierFields ?? [] }),
  );
  const { spec } = buildSpec(parsePartitionExpression(options.partition ?? '', schema), 0, 999);
  const metadata = newTableMetadata({
    location: fileLocationOf(path.resolve(options.directory)),
    schema,
    spec,
    sortOrder: { 'order-id': 0, fields: [] },
    // Conflicting writers in tests retry at once rather than after the production back-off.
    properties: { 'commit.retry.min-wait-ms': '1', ...options.properties },
  });
  const state = await writeMetadataFile(storage, metadata);
  const pointer = { location: state.metadataLocation };
  const operations = (): TableOperations => ({
    storage,
    ...(options.files ? { files: options.files } : {}),
    async load() {
      const metadataLocation = pointer.location;
      return { metadataLocation, metadata: await readMetadataFile(storage, metadataLocation) };
    },
    async swap(base, newLocation) {
      if (pointer.location !== base.metadataLocation) {
        throw new TributaryError('ICEBERG_COMMIT_CONFLICT', 'the table changed', { retryable: true });
      }
      pointer.location = newLocation;
    },
  });
  return {
    table: new Table(identifier, operations(), state),
    load: async () => {
      const ops = operations();
      return new Table(identifier, ops, await ops.load());
    },
  };
}

/**
 * `engine` whose connection runs `before` ahead of the next statement matching `pattern` while
 * `trigger.armed` — once: it disarms itself. A `before` that throws fails that statement.
 */
export function interceptedEngine(
  engine: Engine,
  pattern: RegExp,
  trigger: { armed: boolean },
  before: () => Promise<void> | void,
): Engine {
  const { connection } = engine;
  const intercept =
    (method: 'run' | 'runAndReadAll') =>
    async (sql: string, ...rest: unknown[]): Promise<unknown> => {
      if (trigger.armed && pattern.test(sql)) {
        trigger.armed = false;
        await before();
      }
      return (connection[method] as (...args: unknown[]) => Promise<unknown>).call(connection, sql, ...rest);
    };
  const proxy = new Proxy(connection, {
    get: (target, property) =>
      property === 'run' || property === 'runAndReadAll'
        ? intercept(property)
        : (Reflect.get(target, property, target) as unknown),
  });
  return { instance: engine.instance, connection: proxy, close: () => undefined };
}
