import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { openSqlDriver } from '../catalog/sql-driver.ts';
import { isTributaryError } from '../errors.ts';
import { keyAllowsIngest, keyAllowsTable, KeyStore, KEYS_TABLE } from './keys.ts';

describe('API keys', () => {
  it('stores only a salted hash, verifies in constant time, and forgets revoked keys', async () => {
    const driver = await openSqlDriver('sqlite::memory:');
    let now = 1_800_000_000_000;
    const store = await KeyStore.open(driver, { cacheTtlMs: 1000, now: () => now });
    const { key, secret } = await store.create({ name: 'web', role: 'ingest', streams: ['clicks'] });
    assert.match(secret, /^trk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    const [row] = await driver.query<{ hash: string; salt: string }>(`select * from ${KEYS_TABLE}`);
    assert.ok(row && !JSON.stringify(row).includes(secret.slice(17)), 'the secret is not stored');
    assert.equal(row.salt.length, 32);

    const verified = await store.verify(secret);
    assert.equal(verified?.id, key.id);
    assert.equal((await store.verify(secret))?.id, key.id, 'again, from the cache');
    assert.ok(keyAllowsIngest(verified, 'clicks'));
    assert.ok(!keyAllowsIngest(verified, 'orders'));
    assert.equal(await store.verify(secret.slice(0, -1) + (secret.endsWith('A') ? 'B' : 'A')), undefined);
    assert.equal(await store.verify(`trk_000000000000_${'x'.repeat(43)}`), undefined);
    assert.equal(await store.verify('nonsense'), undefined);

    await assert.rejects(
      store.create({ name: 'web', role: 'ingest', streams: ['clicks'] }),
      (e) => isTributaryError(e, 'USAGE') && /already exists/.test(e.message),
    );
    const other = await KeyStore.open(driver, { cacheTtlMs: 1000, now: () => now });
    assert.ok(await other.verify(secret), 'a second server sees the key');
    assert.equal((await store.revoke('web'))?.id, key.id);
    assert.equal(await store.verify(secret), undefined, 'the revoking store forgets at once');
    now += 1001;
    assert.equal(await other.verify(secret), undefined, 'other servers within the cache TTL');
    assert.deepEqual(await store.list(), []);
    assert.equal((await store.list({ includeRevoked: true })).length, 1);
    await store.create({ name: 'web', role: 'admin', streams: ['*'] });
    const admin = (await store.list())[0]!;
    assert.ok(keyAllowsIngest(admin, 'anything'));
    await driver.close();
  });

  it('admits the key a connection presented before without hashing it again, until revoked or stale', async () => {
    const driver = await openSqlDriver('sqlite::memory:');
    let now = 1_800_000_000_000;
    const store = await KeyStore.open(driver, { cacheTtlMs: 1000, now: () => now });
    const { key, secret } = await store.create({ name: 'web', role: 'ingest', streams: ['clicks'] });
    const connection = {};
    assert.equal(store.verifyCached(secret, connection), 'miss', 'the row is read first');
    await store.verify(secret);
    assert.equal((store.verifyCached(secret, connection) as { id: string }).id, key.id);
    assert.equal((store.verifyCached(secret, connection) as { id: string }).id, key.id, 'again');
    const wrong = secret.slice(0, -1) + (secret.endsWith('A') ? 'B' : 'A');
    assert.equal(store.verifyCached(wrong, connection), undefined, 'another secret on it is checked');
    now += 1001;
    assert.equal(store.verifyCached(secret, connection), 'miss', 'a stale row is read again');
    await store.verify(secret);
    assert.equal((store.verifyCached(secret, connection) as { id: string }).id, key.id);
    await store.revoke('web');
    assert.equal(store.verifyCached(secret, connection), 'miss');
    assert.equal(await store.verify(secret), undefined);
    assert.equal(store.verifyCached(secret, connection), undefined, 'revoked');
    await driver.close();
  });

  it('keeps a cached key for the grace period after its last read while the database is down, not longer', async () => {
    const real = await openSqlDriver('sqlite::memory:');
    let down = false;
    const driver = new Proxy(real, {
      get: (target, property) => {
        if (property === 'query' && down) return () => Promise.reject(new Error('connection refused'));
        const value = Reflect.get(target, property, target) as unknown;
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
    let now = 1_800_000_000_000;
    const store = await KeyStore.open(driver, { cacheTtlMs: 1000, now: () => now });
    const { secret } = await store.create({ name: 'web', role: 'ingest', streams: ['clicks'] });
    assert.ok(await store.verify(secret));
    down = true;
    // Used every minute through the outage: accepted for the grace period after the last read, then not.
    const answers: string[] = [];
    for (let minute = 1; minute <= 8; minute++) {
      now += 60_000;
      answers.push(
        await store.verify(secret).then(
          () => 'ok',
          () => 'failed',
        ),
      );
    }
    assert.deepEqual(answers, ['ok', 'ok', 'ok', 'ok', 'ok', 'failed', 'failed', 'failed']); // TTL + 5 min
    down = false;
    assert.ok(await store.verify(secret), 'read again once the database answers');
    await real.close();
  });

  it('revokes by id before by name (a name may look like an id)', async () => {
    const driver = await openSqlDriver('sqlite::memory:');
    const store = await KeyStore.open(driver);
    const { key: leaked } = await store.create({ name: 'leaked', role: 'ingest', streams: ['*'] });
    const { key: other } = await store.create({ name: leaked.id, role: 'ingest', streams: ['*'] });
    assert.equal((await store.revoke(leaked.id))?.id, leaked.id);
    assert.deepEqual(
      (await store.list()).map((k) => k.id),
      [other.id],
    );
    assert.equal((await store.revoke(leaked.id))?.id, other.id, 'then by name');
    await driver.close();
  });

  it('refuses a query key for ingest', async () => {
    const driver = await openSqlDriver('sqlite::memory:');
    const store = await KeyStore.open(driver);
    const { secret } = await store.create({ name: 'bi', role: 'query', tables: ['*'] });
    assert.equal(keyAllowsIngest((await store.verify(secret))!, 'clicks'), false);
    await driver.close();
  });

  it('grants query keys the tables they name, by name, namespace or all', async () => {
    const driver = await openSqlDriver('sqlite::memory:');
    const store = await KeyStore.open(driver);
    const { secret } = await store.create({
      name: 'bi',
      role: 'query',
      tables: ['gold.*', 'Silver.Orders', 'gold.*'],
    });
    const key = (await store.verify(secret))!;
    assert.deepEqual(key.tables, ['gold.*', 'Silver.Orders'], 'stored once each');
    assert.deepEqual(key.streams, []);
    for (const table of ['gold.revenue', 'GOLD.revenue', 'gold.eu.revenue', 'silver.orders', 'SILVER.ORDERS'])
      assert.ok(keyAllowsTable(key, table), table);
    for (const table of ['silver.customers', 'silver.orders2', 'bronze.orders', 'golden.x', 'gold'])
      assert.ok(!keyAllowsTable(key, table), table);
    const ingest = (await store.verify(
      (await store.create({ name: 'web', role: 'ingest', streams: ['*'] })).secret,
    ))!;
    assert.ok(!keyAllowsTable(ingest, 'gold.revenue'), 'ingest keys read nothing');
    assert.deepEqual(ingest.tables, [], 'and say so (keys list --json)');
    const admin = (await store.verify(
      (await store.create({ name: 'ops', role: 'admin', streams: ['*'] })).secret,
    ))!;
    assert.deepEqual(admin.tables, ['*']);
    assert.ok(keyAllowsTable(admin, 'bronze.anything'), 'admin keys read every table unless given tables');
    await store.revoke('bi');
    assert.ok(!keyAllowsTable({ ...key, revokedAt: new Date().toISOString() }, 'gold.revenue'));

    const refusals: Array<[Parameters<KeyStore['create']>[0], RegExp]> = [
      [{ name: 'a', role: 'query' }, /a query key needs the tables it may read/],
      [{ name: 'a', role: 'query', tables: ['*'], streams: ['s'] }, /takes tables, not streams/],
      [{ name: 'a', role: 'ingest', streams: ['s'], tables: ['gold.*'] }, /an ingest key reads no tables/],
      [{ name: 'a', role: 'query', tables: ['orders'] }, /--table "orders": .*no namespace/],
      [{ name: 'a', role: 'query', tables: ['gold.\u0000x'] }, /--table/],
      [{ name: 'a', role: 'admin', tables: ['*'] }, /at least one stream/],
    ];
    for (const [options, message] of refusals) {
      await assert.rejects(
        store.create(options),
        (e) => isTributaryError(e, 'USAGE') && message.test(e.message),
        JSON.stringify(options),
      );
    }
    await driver.close();
  });

  it('adds the grants column to a keys table made before it; its keys read every table', async () => {
    const driver = await openSqlDriver('sqlite::memory:');
    await driver.execute(
      `create table ${KEYS_TABLE} (id varchar(32) primary key, name varchar(200) not null,
        role varchar(16) not null, streams text not null, salt varchar(64) not null, hash varchar(128) not null,
        created_at varchar(40) not null, revoked_at varchar(40))`,
    );
    await driver.execute(
      `insert into ${KEYS_TABLE} (id, name, role, streams, salt, hash, created_at) values ('0123456789ab', 'old', 'query', '["*"]', '00', '00', '2026-01-01T00:00:00.000Z')`,
    );
    const store = await KeyStore.open(driver);
    const [old] = await store.list();
    assert.deepEqual(old?.tables, ['*']);
    assert.ok(keyAllowsTable(old, 'bronze.events'));
    const { key } = await store.create({ name: 'new', role: 'query', tables: ['gold.*'] });
    assert.deepEqual((await store.list()).find((k) => k.id === key.id)?.tables, ['gold.*']);
    await KeyStore.open(driver); // and again: the column is there
    await driver.close();
  });
});
