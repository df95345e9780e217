/**
 * Columns added upstream reach the Iceberg table with PostgreSQL's type (docs/cdc.md, "Column types"):
 * while a mirror pipeline runs, `ALTER TABLE … ADD COLUMN` of many types, and the sink adds each column as
 * `tributary cdc schema` says the table has it now — decimal(10, 2), timestamptz, date, uuid… — not as a
 * type guessed from the JSON values (a numeric's "12.50" is not a string column), and writes the values
 * in that type. A table made from the first records (no schema file) takes the declared types too.
 * `cdc schema` says which NOT NULL columns it leaves optional (docs/cdc.md, Required columns). A column
 * widened upstream (`ALTER COLUMN … TYPE bigint`) is widened in the table as Iceberg allows.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  Background,
  cdcStatus,
  cli,
  makeProject,
  postgresSkipReason,
  PrivatePostgres,
  query,
  removeProjects,
  sourceYaml,
  waitFor,
} from './cdc-support.ts';

const skip = await postgresSkipReason();

const ADDED = {
  discount: 'numeric(10, 2)',
  shipped: 'timestamptz',
  due: 'date',
  local: 'timestamp',
  at: 'time',
  uid: 'uuid',
  doc: 'jsonb',
  big: 'int8',
  small: 'int2',
  flag: 'bool',
  ratio: 'float4',
  score: 'float8',
  tags: 'text[]',
  nums: 'int[]',
  free: 'numeric',
};

describe('postgres CDC column types', { skip }, () => {
  let server: PrivatePostgres;

  before(async () => {
    server = await PrivatePostgres.start();
  });

  after(async () => {
    Background.killAll();
    await server?.stop();
    removeProjects();
  });

  it(
    'adds a column added upstream with its PostgreSQL type, and writes its values in it',
    { timeout: 5 * 60_000 },
    async () => {
      const client = await server.client();
      await client.query(
        `create table public.orders (id int primary key, note text not null);
         insert into public.orders values (1, 'first');`,
      );
      const project = makeProject('tributary-cdc-types-');
      project.write(
        'sources/shop.yaml',
        sourceYaml(server.proxy.port, ['public.orders'], 'slot_name: types_shop\n'),
      );
      const pipeline = (name: string, sink: string) =>
        project.write(
          `pipelines/${name}.yaml`,
          [
            'source: {type: topic, topic: cdc.shop}',
            'transforms: [{type: cdc}]',
            `sinks: [{${sink}}]`,
            'dlq: {max: 1}',
            'batch: {max_records: 1000, interval: 100ms}',
            '',
          ].join('\n'),
        );
      pipeline(
        'silver',
        'type: iceberg, table: silver.orders, mode: upsert, key: [id], delete_column: _deleted, schema: schemas/public.orders.json',
      );
      // A table made from the first records (no schema file).
      pipeline('inferred', 'type: iceberg, table: silver.orders_inferred, partition: ""');
      const before = await cli(project.root, ['cdc', 'schema', 'shop', '--out', 'schemas']);
      assert.equal(before.code, 0, before.stderr);
      assert.match(
        before.stderr,
        /public\.orders: note is NOT NULL in PostgreSQL but optional in the schema/,
        'cdc schema says that NOT NULL columns are optional',
      );

      const source = new Background(project.root, ['cdc', 'run', 'shop']);
      const silver = new Background(project.root, ['run', 'silver']);
      const inferred = new Background(project.root, ['run', 'inferred']);
      const output = () =>
        `source:\n${source.output.slice(-2000)}\nsilver:\n${silver.output.slice(-2000)}\ninferred:\n${inferred.output.slice(-2000)}`;
      await waitFor(
        () => `the snapshot in both tables; ${output()}`,
        async () => {
          const status = await cdcStatus(project.root, 'shop').catch(() => undefined);
          if (status?.snapshotted.length !== 1) return false;
          for (const table of ['silver.orders', 'silver.orders_inferred']) {
            const rows = await query(project.root, `select count(*)::int as n from ${table}`).catch(() => []);
            if (rows[0]?.n !== 1) return false;
          }
          return true;
        },
        120_000,
        500,
      );

      await client.query(
        `alter table orders ${Object.entries(ADDED)
          .map(([name, type]) => `add column ${name} ${type}`)
          .join(', ')}`,
      );
      await client.query(
        `insert into orders (id, note, ${Object.keys(ADDED).join(', ')}) values (2, 'second', 12.50,
           '2026-11-23 10:11:12.5+00', '2026-11-23', '2026-11-23 10:11:12', '10:11:12.5',
           'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": [1, 2]}', 9007199254740993, 7, true, 1.5, 2.25,
           '{x,y}', '{1,2}', 3.14159)`,
      );
      await waitFor(
        () => `the new row in both tables; ${output()}`,
        async () => {
          for (const table of ['silver.orders', 'silver.orders_inferred']) {
            const rows = await query(
              project.root,
              `select count(*)::int as n from ${table} where id = 2`,
            ).catch(() => []);
            if (rows[0]?.n !== 1) return false;
          }
          return true;
        },
        120_000,
        500,
      );
      for (const bg of [silver, inferred, source]) assert.equal(await bg.kill('SIGTERM'), 0, output());

      // What `tributary cdc schema` says of the table as it is now.
      const now = await cli(project.root, ['cdc', 'schema', 'shop', '--out', 'schemas-now']);
      assert.equal(now.code, 0, now.stderr);
      const declared = (
        JSON.parse(readFileSync(path.join(project.root, 'schemas-now', 'public.orders.json'), 'utf8')) as {
          fields: Array<{ name: string; type: unknown }>;
        }
      ).fields;
      const columnTypes = async (table: string) => {
        const shown = await cli(project.root, ['tables', 'show', table, '--json']);
        assert.equal(shown.code, 0, shown.stderr);
        const metadata = JSON.parse(shown.stdout) as {
          'current-schema-id': number;
          schemas: Array<{ 'schema-id': number; fields: Array<{ name: string; type: unknown }> }>;
        };
        const schema = metadata.schemas.find((s) => s['schema-id'] === metadata['current-schema-id'])!;
        // List types without their element ids, as the schema file writes them.
        return Object.fromEntries(
          schema.fields.map((f) => [
            f.name,
            typeof f.type === 'object' && f.type !== null
              ? Object.fromEntries(Object.entries(f.type).filter(([k]) => k !== 'element-id'))
              : f.type,
          ]),
        );
      };
      for (const table of ['silver.orders', 'silver.orders_inferred']) {
        const types = await columnTypes(table);
        // (`_deleted`, which cdc schema adds, is the sink's delete_column in silver.orders: not a column.)
        for (const field of declared.filter((f) => f.name !== '_deleted'))
          assert.deepEqual(types[field.name], field.type, `${table}.${field.name} as cdc schema declares it`);
      }
      for (const table of ['silver.orders', 'silver.orders_inferred']) {
        assert.deepEqual(
          await query(
            project.root,
            `select discount::varchar as discount, shipped::varchar as shipped, due::varchar as due,
                    "local"::varchar as "local", "at"::varchar as "at", uid::varchar as uid, doc, big::varchar as big,
                    small, flag, ratio, score, tags::varchar as tags, nums::varchar as nums, free
               from ${table} where id = 2`,
          ),
          [
            {
              discount: '12.50',
              shipped: '2026-11-23 10:11:12.5+00',
              due: '2026-11-23',
              local: '2026-11-23 10:11:12',
              at: '10:11:12.5',
              uid: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
              doc: '{"a": [1, 2]}',
              big: '9007199254740993',
              small: 7,
              flag: true,
              ratio: 1.5,
              score: 2.25,
              tags: '[x, y]',
              nums: '[1, 2]',
              free: '3.14159',
            },
          ],
          `${table}: the values in their types`,
        );
      }
      await client.end();
    },
  );

  it(
    'widens a column whose type is widened upstream (ALTER COLUMN TYPE), as Iceberg allows',
    { timeout: 5 * 60_000 },
    async () => {
      const client = await server.client();
      await client.query(
        `create table public.items (id int primary key, qty int, price numeric(10, 2), ratio real, label text);
         insert into public.items values (1, 5, 9.99, 0.5, 'first');`,
      );
      const project = makeProject('tributary-cdc-widen-');
      project.write(
        'sources/shop.yaml',
        sourceYaml(
          server.proxy.port,
          ['public.items'],
          'slot_name: widen_shop\nretention: {max_age: 7d, max_bytes: 1GiB}\n',
        ),
      );
      project.write(
        'pipelines/mirror.yaml',
        [
          'source: {type: topic, topic: cdc.shop}',
          'transforms: [{type: cdc}]',
          'sinks: [{type: iceberg, table: silver.items, partition: ""}]',
          'dlq: {max: 1}',
          'batch: {max_records: 1000, interval: 100ms}',
          '',
        ].join('\n'),
      );
      const source = new Background(project.root, ['cdc', 'run', 'shop']);
      const mirror = new Background(project.root, ['run', 'mirror']);
      const output = () => `source:\n${source.output.slice(-2000)}\nmirror:\n${mirror.output.slice(-2000)}`;
      const rows = async (id: number) =>
        (
          await query(project.root, `select count(*)::int as n from silver.items where id = ${id}`).catch(
            () => [],
          )
        )[0]?.n;
      await waitFor(
        () => `the snapshot; ${output()}`,
        async () => (await rows(1)) === 1,
        120_000,
        500,
      );

      // Wider types: int → bigint, numeric(10, 2) → numeric(14, 2), real → double precision; and one
      // Iceberg cannot widen (text → int), whose values still fit a string column.
      await client.query(
        `alter table items alter column qty type bigint, alter column price type numeric(14, 2),
           alter column ratio type double precision, alter column label type int using 7`,
      );
      await client.query(`insert into items values (2, 9007199254740993, 123456789012.34, 1e300, 8)`);
      await waitFor(
        () => `the new row; ${output()}`,
        async () => (await rows(2)) === 1,
        120_000,
        500,
      );
      for (const bg of [mirror, source]) assert.equal(await bg.kill('SIGTERM'), 0, output());

      // The source's retention is its change topic's; its state and column types are kept.
      const topics = await cli(project.root, ['topics', 'list']);
      assert.equal(topics.code, 0, topics.stderr);
      assert.match(topics.stdout, /^cdc\.shop\s+\d+\s+\d+\s+\d+\s+7d, 1\.0 GiB a partition$/m);
      assert.match(topics.stdout, /^cdc\.shop\.state\s+1\s+\d+\s+\d+\s+forever$/m);
      assert.match(topics.stdout, /^cdc\.shop\.schemas\s+1\s+\d+\s+\d+\s+forever$/m);

      const shown = await cli(project.root, ['tables', 'show', 'silver.items', '--json']);
      assert.equal(shown.code, 0, shown.stderr);
      const metadata = JSON.parse(shown.stdout) as {
        'current-schema-id': number;
        schemas: Array<{ 'schema-id': number; fields: Array<{ name: string; type: unknown }> }>;
      };
      const schema = metadata.schemas.find((s) => s['schema-id'] === metadata['current-schema-id'])!;
      assert.deepEqual(Object.fromEntries(schema.fields.map((f) => [f.name, f.type])), {
        id: 'int',
        qty: 'long',
        price: 'decimal(14, 2)',
        ratio: 'double',
        label: 'string',
        _deleted: 'boolean', // the cdc transform's delete marker
      });
      assert.deepEqual(
        await query(
          project.root,
          `select qty::varchar as qty, price::varchar as price, ratio, label from silver.items order by id`,
        ),
        [
          { qty: '5', price: '9.99', ratio: 0.5, label: 'first' },
          { qty: '9007199254740993', price: '123456789012.34', ratio: 1e300, label: '8' },
        ],
      );
      await client.end();
    },
  );
});
