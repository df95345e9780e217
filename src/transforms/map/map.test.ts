import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { isBigInteger, parseJsonExact } from '../../core/json.ts';
import { isTributaryError } from '../../errors.ts';
import type { JsonObject } from '../shared/json-value.ts';
import { configIssues, create, record, records } from '../shared/test-support.ts';
import { mapTransform } from './map.ts';

// Module paths are relative to the project root; the fixtures sit beside this test.
const root = import.meta.dirname;
const fixture = (name: string) => path.join('fixtures', name);

describe('map', () => {
  it('replaces values with what the default export returns', async () => {
    const transform = await create(mapTransform, { module: fixture('orders.ts') }, root);
    const input = record({ price: 2, quantity: 3 }, { partition: 2, offset: 9 });
    const result = await transform.process([input]);
    assert.deepEqual(result.records, [
      { ...input, value: { price: 2, quantity: 3, total: 6, partition: 2 } },
    ]);
    assert.deepEqual(input.value, { price: 2, quantity: 3 });
  });

  it('turns one record into several at the same position, or none', async () => {
    const transform = await create(
      mapTransform,
      { module: fixture('orders.ts'), function: 'explodeItems' },
      root,
    );
    const batch = records([
      { id: 'a', items: [{ sku: 1 }, { sku: 2 }] },
      { id: 'b' },
      { id: 'c', items: [{ sku: 3 }] },
    ]);
    const result = await transform.process(batch);
    assert.deepEqual(
      result.records.map((r) => [r.offset, r.value]),
      [
        [0, { order: 'a', sku: 1 }],
        [0, { order: 'a', sku: 2 }],
        [2, { order: 'c', sku: 3 }],
      ],
    );
    assert.deepEqual(result.rejected, []);
  });

  it('awaits async functions and passes the record context', async () => {
    const transform = await create(
      mapTransform,
      { module: fixture('orders.ts'), function: 'enrichLater' },
      root,
    );
    const result = await transform.process([
      record({ a: 1 }, { key: 'k1', headers: { source: 'http' } }),
      record({ a: 2 }, { key: 'k2', offset: 1 }),
    ]);
    assert.deepEqual(
      result.records.map((r) => r.value),
      [
        { a: 1, key: 'k1', source: 'http' },
        { a: 2, key: 'k2', source: undefined },
      ],
    );
  });

  it('rejects records the function throws on or answers wrongly, and keeps going', async () => {
    const transform = await create(mapTransform, { module: fixture('orders.ts'), function: 'picky' }, root);
    const batch = records([
      { kind: 'bad' },
      { kind: 'ok' },
      { kind: 'number' },
      { kind: 'date' },
      { kind: 'mixed' },
      { kind: 'drop' },
      { kind: 'ok', n: 2 },
    ]);
    const result = await transform.process(batch);
    assert.deepEqual(
      result.records.map((r) => [r.offset, r.value]),
      [
        [1, { kind: 'ok', touched: true }],
        [6, { kind: 'ok', n: 2, touched: true }],
      ],
    );
    assert.deepEqual(
      result.rejected.map((r) => [r.record.offset, r.error]),
      [
        [0, 'map function threw: kind bad is not allowed'],
        [
          2,
          'map function returned number as the returned value: return an object, an array of objects, or null to drop the record',
        ],
        [
          3,
          'map function returned a value JSON cannot hold in the returned value: /when is a Date, not a plain object (use toISOString())',
        ],
        [
          4,
          'map function returned string as element 1 of the returned array: return an object, an array of objects, or null to drop the record',
        ],
      ],
    );
    assert.deepEqual(
      result.rejected[0]?.record.value,
      { kind: 'bad' },
      'the DLQ gets the record as it came in',
    );
  });

  it('gives the function integers beyond ±2^53 as bigints and takes bigints back, exactly', async () => {
    const transform = await create(mapTransform, { module: fixture('orders.ts'), function: 'nextId' }, root);
    const input = record(parseJsonExact('{"id": 1234567890123456789, "small": 5}') as JsonObject);
    const result = await transform.process([input]);
    assert.deepEqual(result.rejected, []);
    const value = result.records[0]?.value;
    assert.equal(
      JSON.stringify(value),
      '{"id":1234567890123456789,"small":5,"type":"bigint","next":1234567890123456790,"smallNext":6,"raw":18446744073709551616}',
    );
    assert.ok(isBigInteger(value?.raw));
    assert.equal(
      JSON.stringify(input.value),
      '{"id":1234567890123456789,"small":5}',
      'the input is not changed',
    );
  });

  it('loads plain JavaScript modules by absolute path', async () => {
    const transform = await create(
      mapTransform,
      { module: path.join(root, fixture('plain.js')), function: 'upper' },
      '/',
    );
    const result = await transform.process([record({ name: 'ada' })]);
    assert.deepEqual(result.records[0]?.value, { name: 'ADA' });
    assert.deepEqual(await transform.process([]), { records: [], rejected: [] });
  });

  it('refuses modules that are missing, fail to load or lack the function', async () => {
    const cases = [
      [{ module: fixture('missing.ts') }, /cannot load the module .*missing\.ts/],
      [{ module: fixture('throws-on-load.js') }, /cannot load the module .*: cannot start/],
      [{ module: fixture('plain.js') }, /plain\.js has no default export that is a function/],
      [
        { module: fixture('orders.ts'), function: 'notAFunction' },
        /orders\.ts has no exported function "notAFunction"/,
      ],
    ] as const;
    for (const [config, pattern] of cases) {
      await assert.rejects(
        create(mapTransform, config, root),
        (error) => isTributaryError(error, 'CONFIG_INVALID') && pattern.test(error.message),
        JSON.stringify(config),
      );
    }
    await assert.rejects(
      create(mapTransform, { module: fixture('orders.ts'), function: 'nope' }, root),
      (error) => isTributaryError(error) && /explodeItems/.test(error.hint ?? ''),
      'the hint lists the functions the module has',
    );
  });

  it('accepts only module files in the config', () => {
    assert.deepEqual(configIssues(mapTransform, { module: 'map.py' }), [
      'module: must be a .js, .mjs, .cjs, .ts or .mts file',
    ]);
  });
});
