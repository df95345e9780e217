/**
 * API keys, stored in the catalog database (SQLite or PostgreSQL) in a table of their own, so every server
 * instance of a project shares them.
 *
 * A key is `trk_<id>_<secret>`: the id (12 hex digits) is public and finds the row; the secret (32 random
 * bytes, base64url) is shown once, when the key is created, and only its HMAC-SHA256 under a per-key
 * random salt is stored. A 256-bit random secret needs no slow hash (scrypt protects guessable passwords);
 * the check compares in constant time. Verified rows are cached for `cacheTtlMs` (10 s), so revoking a key
 * takes effect on every server within that time, and the database is not read on every request.
 */
import { createHmac, hash, randomBytes, timingSafeEqual } from 'node:crypto';
import { TributaryError } from '../errors.ts';
import { foldedName, parseNamespace, parseTableIdentifier } from '../catalog/identifier.ts';
import { sqlFailureOf, type SqlDriver } from '../catalog/sql-driver.ts';

export const KEY_ROLES = ['ingest', 'query', 'admin'] as const;
export type KeyRole = (typeof KEY_ROLES)[number];

export interface ApiKey {
  readonly id: string;
  readonly name: string;
  readonly role: KeyRole;
  /** Streams the key may send to; "*" for all. */
  readonly streams: readonly string[];
  /**
   * Tables the key may read through the query API: "namespace.table", "namespace.*" (its tables and its
   * sub-namespaces'), or "*" for all. Keys made before grants existed read every table.
   */
  readonly tables: readonly string[];
  readonly createdAt: string;
  readonly revokedAt: string | null;
}

interface KeyRow {
  id: string;
  name: string;
  role: string;
  streams: string;
  table_grants: string | null;
  salt: string;
  hash: string;
  created_at: string;
  revoked_at: string | null;
}

interface Cached {
  readonly row: KeyRow | null;
  /** When the entry counts as read (a failed read while the database is down sets it back 1 s short of the TTL). */
  readonly fetchedAt: number;
  /** When the row was last actually read, once a read failed: the stale grace runs from it. */
  readonly readAt?: number;
  /**
   * SHA-256 of the secret last verified against the row's HMAC: the same secret again is then checked
   * with one fast hash (creating an HMAC key costs far more than hashing a short string).
   */
  verified?: Buffer;
  key?: ApiKey;
}

export const KEYS_TABLE = 'tributary_api_keys';
const KEY_COLUMNS = 'id, name, role, streams, table_grants, salt, hash, created_at, revoked_at';
const KEY_FORMAT = /^trk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;
const NAME_FORMAT = /^[A-Za-z0-9][A-Za-z0-9 ._:@/-]{0,99}$/;
/** When the database cannot be reached, a cached row older than the TTL is still used this long. */
const STALE_GRACE_MS = 5 * 60_000;
const MAX_CACHED = 10_000;
// Compared against when the id is unknown, so that unknown and wrong keys take the same time.
const DUMMY_SALT = randomBytes(16).toString('hex');
const DUMMY_HASH = hashSecret(DUMMY_SALT, 'x'.repeat(43));

function hashSecret(salt: string, secret: string): string {
  return createHmac('sha256', Buffer.from(salt, 'hex')).update(secret).digest('hex');
}

/** The strings of a JSON array column; none when it is anything else. */
function textsOf(json: string): string[] {
  try {
    const parsed: unknown = JSON.parse(json);
    return Array.isArray(parsed) ? parsed.filter((s): s is string => typeof s === 'string') : [];
  } catch {
    return [];
  }
}

function toKey(row: KeyRow): ApiKey {
  const role = (KEY_ROLES as readonly string[]).includes(row.role) ? (row.role as KeyRole) : 'ingest';
  return {
    id: row.id,
    name: row.name,
    role,
    streams: textsOf(row.streams),
    // An ingest key reads no table; a key of another role stored without grants (before there were any)
    // reads them all.
    tables: row.table_grants !== null ? textsOf(row.table_grants) : role === 'ingest' ? [] : ['*'],
    createdAt: row.created_at,
    revokedAt: row.revoked_at,
  };
}

/** True when the key may send events to `stream`. */
export function keyAllowsIngest(key: ApiKey, stream: string): boolean {
  if (key.revokedAt) return false;
  if (key.role !== 'ingest' && key.role !== 'admin') return false;
  return key.streams.includes('*') || key.streams.includes(stream);
}

/** True when the key may use the query API (read-only SQL, tables). */
export function keyAllowsQuery(key: ApiKey): boolean {
  return !key.revokedAt && (key.role === 'query' || key.role === 'admin');
}

/**
 * True when the key may read `table` ("namespace.table") through the query API. Names compare as DuckDB
 * compares them: ASCII letters in any case.
 */
export function keyAllowsTable(key: ApiKey, table: string): boolean {
  if (!keyAllowsQuery(key)) return false;
  const name = foldedName(table);
  return key.tables.some((grant) => {
    if (grant === '*') return true;
    const pattern = foldedName(grant);
    return pattern.endsWith('.*') ? name.startsWith(pattern.slice(0, -1)) : name === pattern;
  });
}

/**
 * The table grants of a new key, checked: "*", "namespace.*" or "namespace.table", each a valid identifier.
 * USAGE otherwise.
 */
function checkedGrants(tables: readonly string[]): string[] {
  for (const grant of tables) {
    if (grant === '*') continue;
    try {
      if (grant.endsWith('.*')) parseNamespace(grant.slice(0, -2));
      else parseTableIdentifier(grant);
    } catch (cause) {
      throw new TributaryError('USAGE', `--table ${JSON.stringify(grant)}: ${(cause as Error).message}`, {
        hint: 'name tables as namespace.table, every table of a namespace as namespace.*, or all as "*"',
      });
    }
  }
  return [...new Set(tables)];
}

export interface KeyStoreOptions {
  readonly cacheTtlMs?: number;
  readonly now?: () => number;
}

export class KeyStore {
  readonly #driver: SqlDriver;
  readonly #cacheTtlMs: number;
  readonly #now: () => number;
  readonly #cache = new Map<string, Cached>();
  /** Per connection, the key it presented last and was admitted with (see `verifyCached`). */
  readonly #byConnection = new WeakMap<object, { presented: string; id: string; entry: Cached }>();
  readonly #loading = new Map<string, Promise<KeyRow | null>>();

  private constructor(driver: SqlDriver, options: KeyStoreOptions) {
    this.#driver = driver;
    this.#cacheTtlMs = options.cacheTtlMs ?? 10_000;
    this.#now = options.now ?? Date.now;
  }

  /** Opens the store on a catalog database, creating its table when absent. */
  static async open(driver: SqlDriver, options: KeyStoreOptions = {}): Promise<KeyStore> {
    const ddl = [
      `create table if not exists ${KEYS_TABLE} (id varchar(32) primary key, name varchar(200) not null,
        role varchar(16) not null, streams text not null, table_grants text, salt varchar(64) not null,
        hash varchar(128) not null, created_at varchar(40) not null, revoked_at varchar(40))`,
      `create unique index if not exists ${KEYS_TABLE}_active_name on ${KEYS_TABLE} (name) where revoked_at is null`,
    ];
    for (const sql of ddl) {
      try {
        await driver.execute(sql);
      } catch (error) {
        // Two servers creating the table at once on PostgreSQL: the loser sees a unique violation.
        await new Promise((resolve) => setTimeout(resolve, 100));
        try {
          await driver.execute(sql);
        } catch {
          throw error;
        }
      }
    }
    await addTableGrants(driver);
    return new KeyStore(driver, options);
  }

  get driver(): SqlDriver {
    return this.#driver;
  }

  /**
   * A new key. Ingest keys name their streams; query keys their tables (`tables`: see ApiKey); admin keys
   * their streams, and read every table unless given tables.
   */
  async create(options: {
    name: string;
    role: KeyRole;
    streams?: readonly string[];
    tables?: readonly string[];
  }): Promise<{ key: ApiKey; secret: string }> {
    if (!NAME_FORMAT.test(options.name)) {
      throw new TributaryError('USAGE', `"${options.name}" is not a valid key name`, {
        hint: 'use letters, digits, spaces and . _ : @ / - (at most 100 characters)',
      });
    }
    if (!(KEY_ROLES as readonly string[]).includes(options.role)) {
      throw new TributaryError('USAGE', `"${options.role}" is not a key role`, {
        hint: `use one of ${KEY_ROLES.join(', ')}`,
      });
    }
    const streams = options.streams ?? [];
    const tables = options.tables ?? [];
    if (options.role === 'query' && streams.length > 0) {
      throw new TributaryError('USAGE', 'a query key sends no events: it takes tables, not streams', {
        hint: 'drop --stream; pass --table <namespace.table> (or namespace.*, or "*")',
      });
    }
    if (options.role !== 'query' && streams.length === 0) {
      throw new TributaryError('USAGE', 'a key needs at least one stream', {
        hint: 'pass --stream <name> (repeat it for more, or "*" for every stream)',
      });
    }
    if (options.role === 'ingest' && tables.length > 0) {
      throw new TributaryError('USAGE', 'an ingest key reads no tables', {
        hint: 'drop --table, or make a query key (--role query) or an admin key',
      });
    }
    if (options.role === 'query' && tables.length === 0) {
      throw new TributaryError('USAGE', 'a query key needs the tables it may read', {
        hint: 'pass --table <namespace.table> (repeat it, or namespace.* for a namespace, "*" for every table)',
      });
    }
    const id = randomBytes(6).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const salt = randomBytes(16).toString('hex');
    const row: KeyRow = {
      id,
      name: options.name,
      role: options.role,
      streams: JSON.stringify([...new Set(streams)]),
      table_grants:
        options.role === 'ingest' ? null : JSON.stringify(checkedGrants(tables.length ? tables : ['*'])),
      salt,
      hash: hashSecret(salt, secret),
      created_at: new Date(this.#now()).toISOString(),
      revoked_at: null,
    };
    try {
      await this.#driver.execute(
        `insert into ${KEYS_TABLE} (id, name, role, streams, table_grants, salt, hash, created_at, revoked_at) values (?, ?, ?, ?, ?, ?, ?, ?, null)`,
        [row.id, row.name, row.role, row.streams, row.table_grants, row.salt, row.hash, row.created_at],
      );
    } catch (error) {
      if (sqlFailureOf(error) === 'unique-violation') {
        throw new TributaryError('USAGE', `an active key named "${options.name}" already exists`, {
          hint: 'choose another name, or revoke the old key first (`tributary keys revoke <name>`)',
        });
      }
      throw error;
    }
    return { key: toKey(row), secret: `trk_${id}_${secret}` };
  }

  async list(options: { includeRevoked?: boolean } = {}): Promise<ApiKey[]> {
    const rows = await this.#driver.query<KeyRow & Record<string, unknown>>(
      `select ${KEY_COLUMNS} from ${KEYS_TABLE}` +
        (options.includeRevoked ? '' : ' where revoked_at is null') +
        ' order by created_at, id',
    );
    return rows.map(toKey);
  }

  /**
   * Revokes the active key with this id or, when no active key has that id, with this name (active names
   * are unique); returns it, or undefined when there is none.
   */
  async revoke(idOrName: string): Promise<ApiKey | undefined> {
    const rows = await this.#driver.query<KeyRow & Record<string, unknown>>(
      `select ${KEY_COLUMNS} from ${KEYS_TABLE}
        where revoked_at is null and (id = ? or name = ?)`,
      [idOrName, idOrName],
    );
    // A name may look like another key's id: the id wins.
    const row = rows.find((r) => r.id === idOrName) ?? rows[0];
    if (!row) return undefined;
    const revokedAt = new Date(this.#now()).toISOString();
    await this.#driver.execute(
      `update ${KEYS_TABLE} set revoked_at = ? where id = ? and revoked_at is null`,
      [revokedAt, row.id],
    );
    this.#cache.delete(row.id);
    return toKey({ ...row, revoked_at: revokedAt });
  }

  /**
   * The key a client presented, when it is genuine and not revoked; undefined otherwise. Throws a
   * retryable SERVICE_UNAVAILABLE when the database cannot be reached and nothing usable is cached.
   */
  async verify(presented: string): Promise<ApiKey | undefined> {
    const match = KEY_FORMAT.exec(presented);
    if (!match) return undefined;
    const id = match[1]!;
    let entry = this.#cache.get(id);
    if (!entry || this.#now() - entry.fetchedAt >= this.#cacheTtlMs) {
      const row = await this.#row(id);
      entry = this.#cache.get(id) ?? { row, fetchedAt: this.#now() };
    }
    return this.#match(entry, match[2]!);
  }

  /**
   * `verify` without waiting: the answer when the key's row is cached (the common case: no promise, no
   * database), or "miss" when the database has to be read first.
   */
  verifyCached(presented: string, connection?: object): ApiKey | undefined | 'miss' {
    // The key this connection presented last, still the cached row it was verified against: a client
    // on keep-alive sends the same key with every request, so a comparison with it replaces the regex
    // and the hash.
    const last = connection && this.#byConnection.get(connection);
    // Constant-time all the same: behind a proxy that keeps its connections alive, one connection
    // carries many clients.
    if (last && sameText(last.presented, presented)) {
      const entry = this.#cache.get(last.id);
      if (entry === last.entry && this.#now() - entry.fetchedAt < this.#cacheTtlMs && entry.key)
        return entry.row?.revoked_at ? undefined : entry.key;
    }
    const match = KEY_FORMAT.exec(presented);
    if (!match) return undefined;
    const id = match[1]!;
    const entry = this.#cache.get(id);
    if (!entry || this.#now() - entry.fetchedAt >= this.#cacheTtlMs) return 'miss';
    const key = this.#match(entry, match[2]!);
    if (connection && key) this.#byConnection.set(connection, { presented, id, entry });
    return key;
  }

  #match(entry: Cached, secret: string): ApiKey | undefined {
    const row = entry.row;
    const fingerprint = hash('sha256', secret, 'buffer');
    if (row && entry.verified && timingSafeEqual(entry.verified, fingerprint)) {
      return row.revoked_at ? undefined : (entry.key ??= toKey(row));
    }
    const expected = Buffer.from(row?.hash ?? DUMMY_HASH, 'hex');
    const actual = Buffer.from(hashSecret(row?.salt ?? DUMMY_SALT, secret), 'hex');
    const genuine = expected.length === actual.length && timingSafeEqual(expected, actual);
    if (!row || !genuine || row.revoked_at) return undefined;
    entry.verified = fingerprint;
    return (entry.key ??= toKey(row));
  }

  async #row(id: string): Promise<KeyRow | null> {
    const now = this.#now();
    const cached = this.#cache.get(id);
    if (cached && now - cached.fetchedAt < this.#cacheTtlMs) return cached.row;
    let loading = this.#loading.get(id);
    if (!loading) {
      loading = this.#driver
        .query<KeyRow & Record<string, unknown>>(`select ${KEY_COLUMNS} from ${KEYS_TABLE} where id = ?`, [
          id,
        ])
        .then((rows) => rows[0] ?? null)
        .finally(() => this.#loading.delete(id));
      this.#loading.set(id, loading);
    }
    try {
      const row = await loading;
      if (this.#cache.size >= MAX_CACHED) this.#cache.delete(this.#cache.keys().next().value!);
      this.#cache.set(id, { row, fetchedAt: this.#now() });
      return row;
    } catch (error) {
      // The database is unreachable: go on with what we read last, for a while from that read (not from
      // this failure: a key used often would otherwise outlive its revocation for as long as the outage).
      const readAt = cached?.readAt ?? cached?.fetchedAt;
      if (cached && readAt !== undefined && now - readAt < this.#cacheTtlMs + STALE_GRACE_MS) {
        this.#cache.set(id, { ...cached, readAt, fetchedAt: now - this.#cacheTtlMs + 1000 });
        return cached.row;
      }
      throw error;
    }
  }

  /** Closes the database connection. */
  async close(): Promise<void> {
    await this.#driver.close();
  }
}

/**
 * Adds the table grants' column to a keys table made before it (its keys, null there, read every table).
 * Two servers adding it at once: the loser finds it there.
 */
async function addTableGrants(driver: SqlDriver): Promise<void> {
  const present = () =>
    driver.query(`select table_grants from ${KEYS_TABLE} where 1 = 0`).then(
      () => true,
      () => false,
    );
  if (await present()) return;
  try {
    await driver.execute(`alter table ${KEYS_TABLE} add column table_grants text`);
  } catch (error) {
    if (!(await present())) throw error;
  }
}

/** Whether two texts are equal, in time that depends on their length only. */
function sameText(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}
