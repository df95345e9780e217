import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { foldedName } from '../catalog/identifier.ts';
import {
  ALLOWED_FUNCTIONS,
  ALLOWED_TABLE_FUNCTIONS,
  BINDER_FUNCTIONS,
  DENIED_FUNCTIONS,
  isDeniedFunction,
} from './allowed-functions.ts';
import { openHardenedInstance } from './read-only.ts';
import { parseSingleSelect } from './sql-check.ts';

interface CatalogFunction {
  readonly name: string;
  readonly type: string;
  readonly macroDefinition: string | null;
}

/** Kinds of functions a SELECT's expressions cannot call: table functions have their own allowlist. */
const NOT_CALLED_IN_EXPRESSIONS = new Set(['table', 'table_macro', 'pragma']);

describe('allowed functions', () => {
  let dir: string;
  let instance: DuckDBInstance;
  let connection: DuckDBConnection;
  /** Every function of an instance set up as the read-only engine sets up its own, with what it loads. */
  let functions: CatalogFunction[];
  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'tributary-functions-'));
    ({ instance, admin: connection } = await openHardenedInstance([`${dir}${path.sep}`]));
    const rows = (
      await connection.runAndReadAll(
        'select function_name, function_type, macro_definition from duckdb_functions()',
      )
    ).getRows() as Array<[string, string, string | null]>;
    functions = rows.map(([name, type, macroDefinition]) => ({
      name: foldedName(name),
      type,
      macroDefinition,
    }));
  });
  after(() => {
    connection.closeSync();
    instance.closeSync();
    rmSync(dir, { recursive: true, force: true });
  });

  it('classifies every function DuckDB has, as DuckDB is upgraded: allowed or denied, and never both', () => {
    const callable = functions.filter((f) => !NOT_CALLED_IN_EXPRESSIONS.has(f.type));
    assert.ok(callable.length > 700);
    const unclassified = [
      ...new Set(
        callable
          .filter((f) => !ALLOWED_FUNCTIONS.has(f.name) && !isDeniedFunction(f.name))
          .map((f) => f.name),
      ),
    ];
    assert.deepEqual(unclassified, [], 'classify these in src/query/allowed-functions.ts');
    assert.deepEqual(
      [...ALLOWED_FUNCTIONS].filter(isDeniedFunction),
      [],
      'a function cannot be both allowed and denied',
    );
    // Each name listed is one of DuckDB's (or its binder's), so that a list is not of what no longer exists.
    const names = new Set(callable.map((f) => f.name));
    assert.deepEqual(
      [...ALLOWED_FUNCTIONS, ...DENIED_FUNCTIONS].filter(
        (name) => !names.has(name) && !BINDER_FUNCTIONS.has(name),
      ),
      [],
    );
    for (const name of ALLOWED_TABLE_FUNCTIONS)
      assert.ok(
        functions.some((f) => f.name === name && f.type === 'table'),
        name,
      );
  });

  it('allows every aggregate: list_aggr calls one by a name given as text, which no check sees', () => {
    const aggregates = functions.filter((f) => f.type === 'aggregate').map((f) => f.name);
    assert.ok(aggregates.includes('sum'));
    assert.deepEqual(
      aggregates.filter((name) => !ALLOWED_FUNCTIONS.has(name)),
      [],
    );
  });

  it('allows the calls SQL value keywords become, which no check of calls sees', () => {
    // `select user` parses as a column; DuckDB's binder calls user() when no column has the name
    // (GetSQLValueFunctionName, bind_columnref_expression.cpp, maps these eleven keywords).
    for (const name of [
      'current_catalog',
      'current_date',
      'current_schema',
      'current_role',
      'get_current_time',
      'get_current_timestamp',
      'current_user',
      'current_localtime',
      'current_localtimestamp',
      'session_user',
      'user',
    ])
      assert.ok(ALLOWED_FUNCTIONS.has(name), name);
  });

  it('allows a macro only when its body calls allowed functions and reads no table', async () => {
    // A macro is a FUNCTION node in the query: its body (pg_get_viewdef's `FROM duckdb_views()`) is not.
    const macros = functions.filter((f) => f.type === 'macro' && f.macroDefinition !== null);
    assert.ok(macros.length > 50);
    const reading: string[] = [];
    for (const macro of macros) {
      const body = await parseSingleSelect(connection, `select ${macro.macroDefinition}`);
      const reads =
        body.tables.some((t) => !t.cte) ||
        body.tableFunctions.some((f) => !ALLOWED_TABLE_FUNCTIONS.has(f)) ||
        body.functions.some((f) => !ALLOWED_FUNCTIONS.has(f));
      if (reads) reading.push(macro.name);
    }
    assert.ok(reading.includes('pg_get_viewdef'));
    assert.deepEqual(
      reading.filter((name) => ALLOWED_FUNCTIONS.has(name)),
      [],
    );
  });
});
