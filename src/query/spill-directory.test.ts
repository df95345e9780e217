import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { it } from 'node:test';
import { openEngine } from '../iceberg/duckdb.ts';
import { openHardenedInstance } from './read-only.ts';

it('spills into a directory of its own under the temporary directory, not .tmp in the working directory', async () => {
  const engines = [await openEngine(), await openEngine()];
  const hardened = await openHardenedInstance([tmpdir()]);
  try {
    const settings = await Promise.all(
      [...engines.map((e) => e.connection), hardened.admin].map(async (connection) =>
        String((await connection.runAndReadAll(`select current_setting('temp_directory')`)).getRows()[0]![0]),
      ),
    );
    for (const directory of settings) assert.equal(path.dirname(directory), tmpdir(), directory);
    assert.equal(new Set(settings).size, 3, 'one each: DuckDB names its spill files alike');
  } finally {
    for (const engine of engines) engine.close();
    hardened.admin.closeSync();
    hardened.instance.closeSync();
  }
});
