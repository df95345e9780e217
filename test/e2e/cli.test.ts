import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { startCli, tributary } from '../cli.ts';

const newDir = () => mkdtempSync(path.join(tmpdir(), 'tributary-e2e-'));

describe('tributary CLI', () => {
  it('lists its commands in --help and prints its version', async () => {
    const help = await tributary(['--help']);
    assert.equal(help.code, 0);
    for (const command of ['init', 'doctor', 'config'])
      assert.match(help.stdout, new RegExp(`\\n  ${command}\\b`));
    const version = await tributary(['--version']);
    assert.equal(version.code, 0);
    assert.match(version.stdout, /^\d+\.\d+\.\d+/);
    for (const command of ['init', 'doctor', 'config', 'config check', 'config print', 'config schema']) {
      const result = await tributary([...command.split(' '), '--help']);
      assert.equal(result.code, 0, command);
      assert.match(result.stdout, /Usage: tributary/);
    }
  });

  it('exits 2 on usage errors with one line', async () => {
    const result = await tributary(['nonsense']);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /unknown command 'nonsense'/);
  });

  it('scaffolds a project that passes doctor', async () => {
    const dir = path.join(newDir(), 'shop');
    const init = await tributary(['init', dir]);
    assert.equal(init.code, 0, init.stderr);
    const yaml = readFileSync(path.join(dir, 'tributary.yaml'), 'utf8');
    assert.match(yaml, /# The durable log every source writes into/);
    assert.match(yaml, /^project: shop$/m);
    // Optional sections are there, commented out; the example stream works once uncommented.
    assert.match(yaml, /^ {2}# tls: \{cert: …, key: …\}$/m);
    assert.match(yaml, /^# streams: \{<name>: \{topic: …,/m);
    const example = yaml.slice(yaml.indexOf('# For example'));
    writeFileSync(
      path.join(dir, 'tributary.yaml'),
      `${yaml}\n${example
        .split('\n')
        .slice(1)
        .map((line) => line.replace(/^# ?/, ''))
        .join('\n')}`,
    );
    writeFileSync(path.join(dir, 'schemas', 'pageview.json'), '{"type": "object"}');
    const printed = await tributary(['config', 'print', '--json'], { cwd: dir });
    assert.equal(printed.code, 0, printed.stderr);
    assert.equal(
      (JSON.parse(printed.stdout) as { platform: { streams: Record<string, { on_invalid: string }> } })
        .platform.streams.pageviews!.on_invalid,
      'dlq',
    );
    const doctor = await tributary(['doctor'], { cwd: dir });
    assert.equal(doctor.code, 0, doctor.stdout + doctor.stderr);
    assert.match(doctor.stdout, /pass\s+platform\s+node version/);
    assert.doesNotMatch(doctor.stdout, /\bfail\b/);
    const again = await tributary(['init', dir]);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /already exists/);
  });

  it('warns of a topic nothing writes, and fails a transform that cannot be built as up would build it (a schema file that is not there, SQL that reads no batch)', async () => {
    const dir = newDir();
    await tributary(['init', dir]);
    mkdirSync(path.join(dir, 'schemas'), { recursive: true });
    writeFileSync(path.join(dir, 'schemas', 'order.json'), '{"type": "object"}');
    const pipeline = (transforms: string) =>
      writeFileSync(
        path.join(dir, 'pipelines', 'orders.yaml'),
        `source: {type: topic, topic: events.orders}\ntransforms:\n${transforms}sinks: [{type: stdout}]\n`,
      );
    pipeline('  - {type: validate, schema: schemas/order.json}\n');
    const good = await tributary(['doctor'], { cwd: dir });
    assert.equal(good.code, 0, good.stdout + good.stderr);
    assert.match(good.stdout, /pass\s+orders: transform validate\s+configured/);
    // Nothing of the project writes events.orders yet; then a stream does.
    assert.match(
      good.stdout,
      /warn\s+pipeline orders\s+source topic\s+no stream, source or pipeline of this project writes topic events\.orders/,
    );
    appendFileSync(path.join(dir, 'tributary.yaml'), '\nstreams:\n  orders: {}\n');
    assert.match(
      (await tributary(['doctor'], { cwd: dir })).stdout,
      /pass\s+pipeline orders\s+source topic\s+events\.orders, written by stream orders/,
    );
    writeFileSync(
      path.join(dir, 'pipelines', 'misspelt.yaml'),
      'source: {type: topic, topic: orders}\nsinks: [{type: stdout}]\n',
    );
    assert.match(
      (await tributary(['doctor'], { cwd: dir })).stdout,
      /warn\s+pipeline misspelt\s+source topic\s+.*writes topic orders \(did you mean events\.orders\?\)/,
    );
    pipeline('  - {type: validate, schema: schemas/ordr.json}\n');
    const missing = await tributary(['doctor'], { cwd: dir });
    assert.equal(missing.code, 1);
    assert.match(
      missing.stdout,
      /fail\s+orders: transform validate\s+configured\s+validate: cannot read the JSON Schema file schemas\/ordr\.json/,
    );
    assert.match(missing.stdout, /relative to the project root/);
    pipeline('  - {type: sql, query: "select * from orders"}\n');
    const unbound = await tributary(['doctor'], { cwd: dir });
    assert.equal(unbound.code, 1);
    assert.match(unbound.stdout, /fail\s+orders: transform sql\s+configured/);
  });

  it('checks the warehouse where the catalog puts it: a file:// URI as its directory, S3 as a bucket to reach', async () => {
    const dir = newDir();
    await tributary(['init', dir]);
    const file = path.join(dir, 'tributary.yaml');
    const yaml = readFileSync(file, 'utf8');
    // `s3` replaces the commented storage.s3 section init wrote.
    const warehouse = (location: string, s3 = '', extra = '') =>
      writeFileSync(
        file,
        `${yaml
          .replace(/^warehouse: .*$/m, `warehouse: ${location}`)
          .replace(/^ {2}s3:\n(?: {4}.*\n)*/m, (section) => (s3 ? `  s3: {${s3}}\n` : section))}${extra}`,
      );
    const elsewhere = path.join(newDir(), 'warehouse');
    warehouse(`file://${elsewhere}`);
    const local = await tributary(['doctor'], { cwd: dir });
    assert.equal(local.code, 0, local.stdout + local.stderr);
    assert.match(local.stdout, new RegExp(`pass\\s+platform\\s+warehouse directory\\s+${elsewhere} \\(`));
    assert.doesNotMatch(local.stdout, /file:/);
    // Credentials from placeholders are read only for an S3 warehouse: unset, they stop nothing else.
    warehouse(
      `file://${elsewhere}`,
      'access_key_id: "${UNSET_S3_KEY}", secret_access_key: "${UNSET_S3_SECRET}"',
    );
    const listed = await tributary(['tables', 'list'], { cwd: dir });
    assert.equal(listed.code, 0, listed.stderr);
    // Nothing answers at the endpoint: the check says which setting to look at.
    const s3 = 'endpoint: "http://127.0.0.1:1", region: us-east-1, path_style: true, access_key_id: a';
    warehouse('s3://bucket/warehouse', `${s3}, secret_access_key: b`);
    const unreachable = await tributary(['doctor'], { cwd: dir });
    assert.equal(unreachable.code, 1);
    assert.match(
      unreachable.stdout,
      /fail\s+platform\s+warehouse directory\s+Could not check s3:\/\/bucket\/warehouse\/\.tributary-doctor-\S+: the connection to http:\/\/127\.0\.0\.1:1 failed \(ECONNREFUSED\) → Check storage\.s3 endpoint/,
    );
    // `up` refuses to start on settings no storage can be opened with, rather than take events no table can
    // receive.
    warehouse('s3://bucket/warehouse', s3, '\nstreams:\n  clicks: {}\n');
    const up = startCli(['up', '--port', '0'], dir);
    up.url.catch(() => undefined);
    const stop = setTimeout(() => up.child.kill('SIGKILL'), 30_000);
    assert.equal(await up.exited, 2, up.stderr());
    clearTimeout(stop);
    assert.match(up.stderr(), /storage\.s3 has access_key_id without secret_access_key/);
  });

  it('tells a failure several checks meet once: the catalog down', async () => {
    const dir = newDir();
    await tributary(['init', dir]);
    const file = path.join(dir, 'tributary.yaml');
    writeFileSync(
      file,
      `${readFileSync(file, 'utf8').replace(/^ {2}uri: sqlite:.*$/m, '  uri: postgresql://u:p@127.0.0.1:1/x')}\nstreams:\n  clicks: {}\n`,
    );
    mkdirSync(path.join(dir, 'pipelines'), { recursive: true });
    writeFileSync(
      path.join(dir, 'pipelines', 'clicks.yaml'),
      'source: {type: topic, topic: events.clicks}\nsinks: [{type: iceberg, table: bronze.clicks}]\n',
    );
    const doctor = await tributary(['doctor'], { cwd: dir });
    assert.equal(doctor.code, 1, doctor.stderr);
    const failed = doctor.stdout.split('\n').filter((line) => line.startsWith('fail'));
    assert.match(failed[0]!, /catalog\s+catalog reachable\s+Catalog database .*ECONNREFUSED/);
    assert.ok(failed.length >= 3, doctor.stdout);
    for (const line of failed.slice(1)) assert.match(line, /the same as catalog: catalog reachable, above$/);
    assert.equal(doctor.stdout.match(/ECONNREFUSED/g)?.length, 1, doctor.stdout);
  });

  it('finds the project from a subdirectory and with --project', async () => {
    const dir = newDir();
    await tributary(['init', dir]);
    assert.equal((await tributary(['doctor'], { cwd: path.join(dir, 'models') })).code, 0);
    assert.equal((await tributary(['--project', dir, 'config', 'print'])).code, 0);
    const nowhere = await tributary(['doctor'], { cwd: newDir() });
    assert.equal(nowhere.code, 2);
    assert.match(nowhere.stderr, /CONFIG_NOT_FOUND.*tributary init/);
  });

  it('stops only the commands that read a value whose variable is not set, naming file, line and variable', async () => {
    const dir = newDir();
    writeFileSync(
      path.join(dir, 'tributary.yaml'),
      'project: demo\nserver:\n  port: ${TRIBUTARY_TEST_UNSET_PORT}\n  tls: {cert: c.pem, key: "${file:/nonexistent/tls.key}"}\n' +
        'streams:\n  hooks:\n    auth: hmac\n    hmac: {secret: "${TRIBUTARY_TEST_UNSET_SECRET}"}\n',
    );
    mkdirSync(path.join(dir, 'pipelines'));
    writeFileSync(
      path.join(dir, 'pipelines', 'copy.yaml'),
      'source: {type: topic, topic: events}\nsinks: [{type: stdout}]\n',
    );
    writeFileSync(path.join(dir, 'events.ndjson'), '{"n": 1}\n{"n": 2}\n');
    // Commands that read none of those values work: tables, query, keys, topics, a pipeline run.
    for (const args of [
      ['tables', 'list'],
      ['query', 'select 42 as answer'],
      ['keys', 'list'],
      ['topics', 'produce', 'events', 'events.ndjson'],
      ['run', 'copy', '--once'],
    ]) {
      const result = await tributary(args, { cwd: dir });
      assert.equal(result.code, 0, `${args.join(' ')}: ${result.stderr}`);
    }
    assert.match((await tributary(['query', 'select 42 as answer'], { cwd: dir })).stdout, /42/);
    // The server needs all of it: it does not start, and says why in one line.
    const serve = await tributary(['serve', '--port', '0'], { cwd: dir });
    assert.equal(serve.code, 2);
    assert.match(
      serve.stderr,
      /CONFIG_UNRESOLVED_VARIABLE\] tributary\.yaml:3: environment variable TRIBUTARY_TEST_UNSET_PORT is not set \(and 2 more unresolved\)/,
    );
    assert.equal(serve.stderr.trim().split('\n').length, 1, 'one line');
    // Set, the value is validated and typed as ever.
    const withVar = await tributary(['config', 'print', '--json'], {
      cwd: dir,
      env: { TRIBUTARY_TEST_UNSET_PORT: '9999' },
    });
    assert.equal(
      (JSON.parse(withVar.stdout) as { platform: { server: { port: number } } }).platform.server.port,
      9999,
    );
  });

  it('stops a command that opens the catalog when catalog.uri needs a variable that is not set', async () => {
    const dir = newDir();
    writeFileSync(
      path.join(dir, 'tributary.yaml'),
      'project: demo\ncatalog:\n  type: sql\n  uri: "postgresql://app:${TRIBUTARY_TEST_UNSET_PW}@127.0.0.1:1/catalog"\n',
    );
    for (const args of [
      ['tables', 'list'],
      ['query', 'select 1'],
      ['keys', 'list'],
    ]) {
      const result = await tributary(args, { cwd: dir });
      assert.equal(result.code, 2, args.join(' '));
      assert.match(
        result.stderr,
        /^error \[CONFIG_UNRESOLVED_VARIABLE\] tributary\.yaml:4: environment variable TRIBUTARY_TEST_UNSET_PW is not set \(export TRIBUTARY_TEST_UNSET_PW=/,
      );
    }
  });

  it('lists every unresolved placeholder in config check (exit 2), doctor (failed checks) and config print', async () => {
    const dir = newDir();
    await tributary(['init', dir]);
    appendFileSync(
      path.join(dir, 'tributary.yaml'),
      '\nstreams:\n  hooks:\n    auth: hmac\n    hmac: {secret: "${TRIBUTARY_TEST_UNSET_SECRET}"}\n' +
        '    cors_origins: ["${TRIBUTARY_TEST_UNSET_ORIGIN}"]\n',
    );
    const lines = readFileSync(path.join(dir, 'tributary.yaml'), 'utf8').split('\n');
    const line = (text: string) => lines.findIndex((l) => l.includes(text)) + 1;
    mkdirSync(path.join(dir, 'sources'));
    writeFileSync(
      path.join(dir, 'sources', 'shop.yaml'),
      'type: postgres_cdc\ndatabase: shop\nuser: cdc\npassword: ${TRIBUTARY_TEST_UNSET_PG}\ntables: [public.orders]\n',
    );
    const expected = [
      `tributary.yaml:${line('TRIBUTARY_TEST_UNSET_SECRET')}: environment variable TRIBUTARY_TEST_UNSET_SECRET is not set`,
      `tributary.yaml:${line('TRIBUTARY_TEST_UNSET_ORIGIN')}: environment variable TRIBUTARY_TEST_UNSET_ORIGIN is not set`,
      `sources/shop.yaml:4: environment variable TRIBUTARY_TEST_UNSET_PG is not set`,
    ];
    const check = await tributary(['config', 'check'], { cwd: dir });
    assert.equal(check.code, 2, check.stdout + check.stderr);
    for (const problem of expected)
      assert.ok(check.stdout.includes(problem), `${problem} in\n${check.stdout}`);
    assert.match(check.stdout, /→ export TRIBUTARY_TEST_UNSET_SECRET=\.\.\., or give a default/);
    assert.match(check.stderr, /CONFIG_CHECK_FAILED\] 3 configuration problems/);

    const doctor = await tributary(['doctor'], { cwd: dir });
    assert.equal(doctor.code, 1, doctor.stderr);
    const failed = doctor.stdout.split('\n').filter((l) => /^fail\s+config\s+placeholders\s/.test(l));
    assert.equal(failed.length, expected.length, doctor.stdout);
    expected.forEach((problem, i) => assert.ok(failed[i]!.includes(`${problem} → export`), failed[i]));
    assert.match(doctor.stdout, /pass\s+catalog\s+catalog reachable/);

    const printed = await tributary(['config', 'print'], { cwd: dir });
    // The sources' password is unresolved too: config print reads sources whole, as `cdc run` does.
    assert.equal(printed.code, 2);
    rmSync(path.join(dir, 'sources', 'shop.yaml'));
    const platformOnly = await tributary(['config', 'print'], { cwd: dir });
    assert.equal(platformOnly.code, 0, platformOnly.stderr);
    assert.match(platformOnly.stdout, /hmac: «unresolved»/);
    assert.match(platformOnly.stdout, /cors_origins: «unresolved»/);
    assert.match(
      platformOnly.stderr,
      /^warning: tributary\.yaml:\d+: environment variable TRIBUTARY_TEST_UNSET_SECRET is not set/m,
    );

    const set = {
      TRIBUTARY_TEST_UNSET_SECRET: 's3cret',
      TRIBUTARY_TEST_UNSET_ORIGIN: 'https://shop.example.com',
    };
    const passes = await tributary(['config', 'check'], { cwd: dir, env: set });
    assert.equal(passes.code, 0, passes.stdout + passes.stderr);
    assert.match(
      passes.stdout,
      /Configuration ok: tributary\.yaml, 0 pipeline\(s\), 0 source\(s\), \d+ model\(s\)\./,
    );
  });

  it('exits 2 with a suggestion for an unknown key', async () => {
    const dir = newDir();
    await tributary(['init', dir]);
    appendFileSync(path.join(dir, 'tributary.yaml'), '\nwarehose: /tmp/x\n');
    const result = await tributary(['config', 'print'], { cwd: dir });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /tributary\.yaml:\d+: unknown key "warehose".*did you mean "warehouse"\?/);
  });

  it('prints the configuration with secrets redacted, and the JSON Schema', async () => {
    const dir = newDir();
    writeFileSync(path.join(dir, 'secret'), 'hunter2\n');
    writeFileSync(
      path.join(dir, 'tributary.yaml'),
      'catalog:\n  type: sql\n  uri: postgresql://app:${file:secret}@db:5432/catalog\n',
    );
    mkdirSync(path.join(dir, 'sources'));
    writeFileSync(
      path.join(dir, 'sources', 'shop.yaml'),
      'type: postgres_cdc\ndatabase: shop\nuser: cdc\npassword: ${file:../secret}\ntables: [public.orders]\n',
    );
    const printed = await tributary(['config', 'print'], { cwd: dir });
    assert.equal(printed.code, 0, printed.stderr);
    assert.doesNotMatch(printed.stdout, /hunter2/);
    assert.match(printed.stdout, /«redacted»/);
    assert.match(printed.stdout, /sources:\n\s+shop:\n[\s\S]*password: «redacted»/);
    const schema = await tributary(['config', 'schema']);
    assert.equal((JSON.parse(schema.stdout) as { type: string }).type, 'object');
    const pipelineSchema = await tributary(['config', 'schema', 'pipelines/*.yaml']);
    assert.ok(
      (JSON.parse(pipelineSchema.stdout) as { properties: Record<string, unknown> }).properties.source,
    );
    const sourceSchema = await tributary(['config', 'schema', 'sources/*.yaml']);
    assert.match(sourceSchema.stdout, /postgres_cdc/);
  });

  it('shows a stack trace only with --verbose', async () => {
    const dir = newDir();
    writeFileSync(path.join(dir, 'tributary.yaml'), 'project: [\n');
    const quiet = await tributary(['doctor'], { cwd: dir });
    assert.equal(quiet.code, 2);
    assert.doesNotMatch(quiet.stderr, /\n\s+at /);
    const verbose = await tributary(['--verbose', 'doctor'], { cwd: dir });
    assert.match(verbose.stderr, /\n\s+at /);
  });

  it('keys produced records by the exact digits of an integer beyond ±2^53', async () => {
    const dir = newDir();
    writeFileSync(
      path.join(dir, 'tributary.yaml'),
      'project: keys\nlog: {backend: embedded, durability: os}\n',
    );
    writeFileSync(
      path.join(dir, 'events.ndjson'),
      '{"user": 1234567890123456789, "n": 1}\n{"user": 1234567890123456788, "n": 2}\n',
    );
    const produced = await tributary(['topics', 'produce', 'events', 'events.ndjson', '--key', 'user'], {
      cwd: dir,
    });
    assert.equal(produced.code, 0, produced.stderr);
    const read = await tributary(['topics', 'read', 'events'], { cwd: dir });
    assert.equal(read.code, 0, read.stderr);
    const keys = read.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { key: string })
      .map((r) => r.key)
      .sort();
    assert.deepEqual(keys, ['1234567890123456788', '1234567890123456789']);
  });
});
