/**
 * API keys in a PostgreSQL catalog database, shared by several servers: a key created through one store is
 * accepted by another, and a revocation reaches every server within the cache TTL.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import pg from 'pg';
import { openSqlDriver } from '../../src/catalog/sql-driver.ts';
import { KeyStore, KEYS_TABLE } from '../../src/server/keys.ts';
import { useService } from '../services/index.ts';

const postgres = await useService('postgres');

describe('API keys on PostgreSQL', { skip: postgres.skip }, () => {
  it('are shared by every server of the project, and revoked everywhere', async () => {
    const serverUrl = postgres.info?.url ?? '';
    const name = `tributary_keys_${randomUUID().replaceAll('-', '')}`;
    const admin = async (sql: string) => {
      const client = new pg.Client({ connectionString: serverUrl });
      await client.connect();
      try {
        await client.query(sql);
      } finally {
        await client.end();
      }
    };
    await admin(`CREATE DATABASE ${name}`);
    const url = new URL(serverUrl);
    url.pathname = `/${name}`;
    const drivers = [await openSqlDriver(url.toString()), await openSqlDriver(url.toString())];
    try {
      let now = Date.now();
      // Two servers starting at once both create the table.
      const [one, two] = await Promise.all(
        drivers.map((driver) => KeyStore.open(driver, { cacheTtlMs: 1000, now: () => now })),
      );
      const { key, secret } = await one!.create({
        name: 'web',
        role: 'ingest',
        streams: ['clicks', 'views'],
      });
      assert.equal((await two!.verify(secret))?.id, key.id);
      assert.deepEqual((await two!.verify(secret))?.streams, ['clicks', 'views']);
      const rows = await drivers[0]!.query(`select * from ${KEYS_TABLE}`);
      assert.ok(!JSON.stringify(rows).includes(secret.slice(17)), 'only the hash is stored');
      await assert.rejects(
        one!.create({ name: 'web', role: 'ingest', streams: ['clicks'] }),
        /already exists/,
      );
      await one!.revoke(key.id);
      assert.ok(await two!.verify(secret), 'cached for up to the TTL');
      now += 1001;
      assert.equal(await two!.verify(secret), undefined);
    } finally {
      for (const driver of drivers) await driver.close();
      await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    }
  });
});
