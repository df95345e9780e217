import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { isTributaryError, type TributaryError } from '../../errors.ts';
import { parseConfigText } from './load-file.ts';
import { pipelineSchemaFor } from './pipeline.ts';
import { platformSchema } from './platform.ts';
import { REDACTED, redactSecrets, UNRESOLVED } from './redact.ts';

const parse = (text: string, env: Record<string, string> = {}) =>
  parseConfigText(text, '/project/tributary.yaml', platformSchema, { env });

/** As tributary.yaml is read: a value whose placeholder is unresolved throws when read. */
const parseDeferring = (text: string, env: Record<string, string> = {}, file = '/project/tributary.yaml') =>
  parseConfigText(text, file, platformSchema, { env, unresolved: 'defer' });

function expectError(fn: () => unknown, code: TributaryError['code']): TributaryError {
  try {
    fn();
  } catch (error) {
    assert.ok(isTributaryError(error, code), `expected ${code}, got ${String(error)}`);
    return error;
  }
  assert.fail(`expected ${code}, nothing was thrown`);
}

describe('configuration files', () => {
  it('fills every default from an empty file', () => {
    const { value } = parse('');
    assert.equal(value.log.backend, 'embedded');
    assert.equal(value.log.durability, 'fsync');
    assert.equal(value.catalog.name, 'tributary');
    assert.equal(value.server.port, 8080);
  });

  it('substitutes ${VAR} and ${VAR:-default}, typing a plain whole placeholder', () => {
    const { value } = parse(
      'project: "shop-${ENV:-dev}"\nserver:\n  port: ${PORT}\n  host: "${HOST:-0.0.0.0}"\n',
      { PORT: '9090' },
    );
    assert.equal(value.project, 'shop-dev');
    assert.equal(value.server.port, 9090);
    assert.equal(value.server.host, '0.0.0.0');
  });

  it('reads integers beyond ±2^53 exactly, and refuses them where a setting takes a number', () => {
    const pipeline = parseConfigText(
      'where: [{field: id, equals: 9007199254740993, in: [+012345678901234567890, 1.5]}]\n',
      '/project/pipelines/p.yaml',
      z.looseObject({}),
    ).value as { where: Array<{ equals: unknown; in: unknown[] }> };
    assert.equal(
      JSON.stringify(pipeline.where[0]),
      '{"field":"id","equals":9007199254740993,"in":[12345678901234567890,1.5]}',
    );
    const error = expectError(() => parse('server:\n  port: 12345678901234567890\n'), 'CONFIG_INVALID');
    assert.match(
      error.message,
      /tributary\.yaml:2: server\.port: 12345678901234567890 is beyond ±2\^53, which this setting cannot hold exactly$/,
    );
    assert.match(error.hint ?? '', /9007199254740991/);
  });

  it('keeps a quoted placeholder a string and honours the $${ escape', () => {
    const { value } = parse('project: "$${NOT_A_VAR}"\n');
    assert.equal(value.project, '${NOT_A_VAR}');
  });

  it('never lets a variable change the structure of the file', () => {
    const { value } = parse('project: ${NAME}\n', { NAME: 'a\nlog: {backend: kafka}' });
    assert.equal(value.project, 'a\nlog: {backend: kafka}');
    assert.equal(value.log.backend, 'embedded');
  });

  it('names file, line and variable when a variable is missing', () => {
    const error = expectError(
      () => parse('project: x\nserver:\n  port: ${MISSING_PORT}\n'),
      'CONFIG_UNRESOLVED_VARIABLE',
    );
    assert.match(error.message, /tributary\.yaml:3: environment variable MISSING_PORT is not set/);
    assert.equal(error.exitCode, 2);
    assert.equal(error.context.variable, 'MISSING_PORT');
  });

  it('reads ${file:...} secrets relative to the file and marks them secret', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'trb-'));
    writeFileSync(path.join(dir, 'name.txt'), 'from-a-file\n');
    const { value, secretPaths } = parseConfigText(
      'project: ${file:name.txt}\n',
      path.join(dir, 'tributary.yaml'),
      platformSchema,
      {},
    );
    assert.equal(value.project, 'from-a-file');
    assert.deepEqual(secretPaths, [['project']]);
    expectError(
      () =>
        parseConfigText('project: ${file:nope.txt}\n', path.join(dir, 'tributary.yaml'), platformSchema, {}),
      'CONFIG_SECRET_FILE',
    );
  });

  it('suggests the closest key for an unknown key, with its line', () => {
    const error = expectError(() => parse('project: x\n\ncatalgo:\n  type: sql\n'), 'CONFIG_UNKNOWN_KEY');
    assert.match(error.message, /tributary\.yaml:3: unknown key "catalgo"/);
    assert.equal(error.hint, 'did you mean "catalog"?');
  });

  it('suggests keys inside nested objects', () => {
    const error = expectError(
      () => parse('log:\n  backend: embedded\n  durabilty: os\n'),
      'CONFIG_UNKNOWN_KEY',
    );
    assert.match(error.message, /:3: unknown key "durabilty" in log/);
    assert.equal(error.hint, 'did you mean "durability"?');
  });

  it('says the path and the expected type of a wrong value', () => {
    const error = expectError(() => parse('server:\n  port: "eighty"\n'), 'CONFIG_INVALID');
    assert.match(error.message, /:2: server\.port: expected number, got string "eighty"/);
    const enumError = expectError(
      () => parse('log:\n  backend: embedded\n  durability: sometimes\n'),
      'CONFIG_INVALID',
    );
    assert.match(enumError.message, /log\.durability: must be one of "fsync", "os"/);
  });

  it('says that a catalog type of the production plans is not built, and what to use today', () => {
    const rest = expectError(
      () => parse('catalog:\n  type: rest\n  uri: http://polaris:8181/api/catalog\n'),
      'CONFIG_INVALID',
    );
    assert.match(
      rest.message,
      /:2: catalog\.type: must be one of "sql" — REST catalogs .* are planned, not built: for many writers use the SQL catalog on PostgreSQL/,
    );
  });

  it('takes a Kafka log with its brokers, and refuses one without them or with keys of the embedded log', () => {
    const platform = parse(
      'log:\n  backend: kafka\n  brokers: [kafka-1:9092, "[::1]:9093"]\n  sasl: {mechanism: scram-sha-512, username: u, password: p}\n  tls: true\n',
    ).value;
    assert.deepEqual(platform.log, {
      backend: 'kafka',
      brokers: ['kafka-1:9092', '[::1]:9093'],
      client_id: 'tributary',
      prefix: '',
      partitions: 4,
      path: '.tributary/log',
      sasl: { mechanism: 'scram-sha-512', username: 'u', password: 'p' },
      tls: true,
    });
    const missing = expectError(() => parse('log:\n  backend: kafka\n'), 'CONFIG_INVALID');
    assert.match(missing.message, /log\.brokers/);
    const badBroker = expectError(
      () => parse('log:\n  backend: kafka\n  brokers: [kafka-1]\n'),
      'CONFIG_INVALID',
    );
    assert.match(badBroker.message, /a broker is host:port/);
    const embeddedKey = expectError(
      () => parse('log:\n  backend: kafka\n  brokers: [k:9092]\n  durability: os\n'),
      'CONFIG_UNKNOWN_KEY',
    );
    assert.match(embeddedKey.message, /unknown key "durability" in log/);
    const unknown = expectError(() => parse('log:\n  backend: pulsar\n'), 'CONFIG_INVALID');
    assert.match(unknown.message, /log\.backend/);
    assert.match(unknown.message, /embedded/);
    assert.match(unknown.message, /kafka/);
  });

  it('takes a catalog or log section without its type, which has one value today', () => {
    // As docs/deployment.md says to switch the catalog: `catalog.uri: postgresql://…`, and nothing more.
    const { value } = parse('log:\n  path: /data/log\ncatalog:\n  uri: postgresql://app@db:5432/catalog\n');
    assert.equal(value.log.backend, 'embedded');
    assert.equal(value.log.path, '/data/log');
    assert.equal(value.catalog.type, 'sql');
    assert.equal(value.catalog.uri, 'postgresql://app@db:5432/catalog');
  });

  it('names the component types, and the likely one, for a type that is none of them', () => {
    const component = <Kind extends 'transform' | 'sink'>(kind: Kind, type: string) => ({
      kind,
      type,
      schema: z.strictObject({ type: z.literal(type), fields: z.array(z.string()).optional() }),
      create: () => Promise.reject(new Error('not built here')),
    });
    const schema = pipelineSchemaFor({
      transforms: [component('transform', 'mask'), component('transform', 'filter')],
      sinks: [component('sink', 'iceberg'), component('sink', 'file')],
    });
    const text =
      'source: {type: topic, topic: t}\ntransforms:\n  - {type: masks, fields: [a]}\nsinks: [{type: file}]\n';
    const error = expectError(
      () => parseConfigText(text, '/project/pipelines/p.yaml', schema, {}),
      'CONFIG_INVALID',
    );
    assert.match(
      error.message,
      /p\.yaml:3: transforms\[0\]\.type: must be one of "mask", "filter" — did you mean "mask"\?/,
    );
  });

  it('reports YAML syntax errors with a line', () => {
    const error = expectError(() => parse('project: x\nserver:\n  port: [1, 2\n'), 'CONFIG_SYNTAX');
    assert.match(error.message, /tributary\.yaml:\d+:/);
  });

  it('rejects duplicate keys', () => {
    expectError(() => parse('project: a\nproject: b\n'), 'CONFIG_SYNTAX');
  });
});

describe('unresolved placeholders, deferred', () => {
  it('loads, and throws the error of a value when it is read, not before', () => {
    const { value, unresolved } = parseDeferring(
      'project: shop\nserver:\n  host: 0.0.0.0\n  port: ${TRB_UNSET_PORT}\n',
    );
    assert.equal(value.project, 'shop');
    assert.equal(value.server.host, '0.0.0.0');
    assert.equal(value.catalog.type, 'sql');
    const error = expectError(() => value.server.port, 'CONFIG_UNRESOLVED_VARIABLE');
    assert.match(error.message, /tributary\.yaml:4: environment variable TRB_UNSET_PORT is not set/);
    assert.match(error.hint ?? '', /export TRB_UNSET_PORT=/);
    assert.deepEqual(
      unresolved.map((u) => [u.path, u.errors.map((e) => e.context.variable)]),
      [[['server', 'port'], ['TRB_UNSET_PORT']]],
    );
    // Set, it is validated and typed as ever.
    assert.equal(
      parseDeferring('server:\n  port: ${TRB_UNSET_PORT}\n', { TRB_UNSET_PORT: '9090' }).value.server.port,
      9090,
    );
    const invalid = expectError(
      () => parseDeferring('server:\n  port: ${TRB_UNSET_PORT}\n', { TRB_UNSET_PORT: 'eighty' }),
      'CONFIG_INVALID',
    );
    assert.match(invalid.message, /server\.port: expected number/);
  });

  it('defers what needs the value where leaving it out is invalid: a required key, a list item', () => {
    const { value, unresolved } = parseDeferring(
      'server:\n  tls: {cert: cert.pem, key: "${file:/nonexistent/tributary-key}"}\n' +
        '  trusted_proxies: [10.0.0.0/8, "${TRB_UNSET_PROXY}"]\n' +
        'streams:\n  hooks:\n    auth: hmac\n    hmac: {secret: "${TRB_UNSET_SECRET}"}\n',
    );
    assert.deepEqual(
      unresolved.map((u) => u.path),
      [
        ['server', 'tls'],
        ['server', 'trusted_proxies'],
        ['streams', 'hooks', 'hmac'],
      ],
    );
    expectError(() => value.server.tls, 'CONFIG_SECRET_FILE');
    expectError(() => value.server.trusted_proxies, 'CONFIG_UNRESOLVED_VARIABLE');
    expectError(() => value.streams?.hooks?.hmac, 'CONFIG_UNRESOLVED_VARIABLE');
    // What does not depend on them reads as ever: the streams' names, a stream's other settings.
    assert.equal(value.server.stall_after, 300_000);
    assert.deepEqual(Object.keys(value.streams ?? {}), ['hooks']);
    assert.equal(value.streams?.hooks?.auth, 'hmac');
    // Printed: shown unresolved, secrets still redacted.
    const printed = redactSecrets(value) as { server: Record<string, unknown> };
    assert.equal(printed.server.tls, UNRESOLVED);
    assert.equal(printed.server.port, 8080);
  });

  it('still fails the load at once on a typo or a wrong value elsewhere, even next to an unresolved value', () => {
    const typo = expectError(
      () => parseDeferring('server:\n  port: ${TRB_UNSET_PORT}\n  hots: 0.0.0.0\n'),
      'CONFIG_UNKNOWN_KEY',
    );
    assert.match(typo.message, /:3: unknown key "hots" in server/);
    const wrong = expectError(
      () =>
        parseDeferring('server:\n  port: ${TRB_UNSET_PORT}\nlog:\n  backend: embedded\n  partitions: 0\n'),
      'CONFIG_INVALID',
    );
    assert.match(wrong.message, /:5: log\.partitions/);
    expectError(() => parseDeferring('project: ${1NOT_A_NAME}\n'), 'CONFIG_INVALID');
  });

  it('lists every unresolved placeholder, several in one value too, and keeps secret files redacted', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'trb-'));
    writeFileSync(path.join(dir, 'name.txt'), 'from-a-file\n');
    const { value, unresolved, secretPaths } = parseDeferring(
      'project: ${file:name.txt}\ncatalog:\n  type: sql\n  uri: "postgresql://${TRB_UNSET_USER}:${TRB_UNSET_PW}@db/c"\n',
      {},
      path.join(dir, 'tributary.yaml'),
    );
    assert.deepEqual(
      unresolved.flatMap((u) =>
        u.errors.map((e) => `${String(e.context.line)} ${String(e.context.variable)}`),
      ),
      ['4 TRB_UNSET_USER', '4 TRB_UNSET_PW'],
    );
    assert.equal(value.project, 'from-a-file');
    assert.deepEqual(secretPaths, [['project']]);
    const printed = redactSecrets(value, secretPaths) as { project: unknown; catalog: unknown };
    assert.equal(printed.project, REDACTED);
    assert.deepEqual(printed.catalog, { type: 'sql', name: 'tributary', uri: UNRESOLVED });
  });
});
