import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { loadProject, requireResolvedPlatform, unresolvedPlaceholders } from './project.ts';

const roots: string[] = [];
after(() => roots.forEach((root) => rmSync(root, { recursive: true, force: true })));

/** A project with these files (path → text) beside a minimal tributary.yaml. */
function projectWith(files: Record<string, string>): string {
  const root = mkdtempSync(path.join(tmpdir(), 'tributary-project-'));
  roots.push(root);
  writeFileSync(path.join(root, 'tributary.yaml'), 'project: test\n');
  for (const [file, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    writeFileSync(path.join(root, file), text);
  }
  return root;
}

/** The pipelines or sources of the project at `root`: read when asked for. */
const loadedAs = (root: string, kind: 'pipeline' | 'source') => {
  const project = loadProject(root);
  return kind === 'pipeline' ? project.pipelines : project.sources;
};

const pipeline = 'source: {type: topic, topic: events}\nsinks: [{type: stdout}]\n';
const source = 'type: postgres\n';

describe('loadProject', () => {
  it('names each pipeline and source by its file, .yaml or .yml', () => {
    const root = projectWith({
      'pipelines/bronze.yaml': pipeline,
      'pipelines/silver-orders.yml': pipeline,
      'pipelines/notes.txt': 'not a pipeline',
      'sources/shop.yaml': source,
    });
    const project = loadProject(root);
    assert.deepEqual([...project.pipelines.keys()], ['bronze', 'silver-orders']);
    assert.equal(project.pipelines.get('bronze')!.file, path.join(root, 'pipelines/bronze.yaml'));
    assert.equal(project.pipelines.get('silver-orders')!.config.source.topic, 'events');
    assert.deepEqual([...project.sources.keys()], ['shop']);
    assert.equal(project.sources.get('shop')!.config.type, 'postgres');
  });

  it('reads pipelines and sources when asked for: a command that uses neither needs none of their secrets', () => {
    const root = projectWith({
      'sources/shop.yaml': 'type: postgres\npassword: ${TRIBUTARY_TEST_UNSET_PASSWORD}\n',
    });
    const project = loadProject(root, { env: {} });
    assert.equal(project.platform.project, 'test');
    assert.equal(project.pipelines.size, 0);
    assert.throws(() => project.sources, /TRIBUTARY_TEST_UNSET_PASSWORD is not set/);
  });

  it('reads tributary.yaml at once, but a value of it that needs an unset variable stops only its readers', () => {
    const root = projectWith({
      'tributary.yaml':
        'project: test\nserver:\n  tls: {cert: c.pem, key: "${file:/nonexistent/tributary.key}"}\n' +
        'catalog:\n  type: sql\n  uri: "postgresql://app:${TRIBUTARY_TEST_UNSET_PW}@db/c"\n',
      'sources/shop.yaml': 'type: postgres\npassword: ${TRIBUTARY_TEST_UNSET_PASSWORD}\n',
    });
    const project = loadProject(root, { env: {} });
    assert.equal(project.platform.project, 'test');
    assert.equal(project.platform.server.port, 8080);
    assert.equal(project.platform.log.path, '.tributary/log');
    assert.throws(() => project.platform.server.tls, /tributary\.yaml:3: cannot read secret file/);
    assert.throws(
      () => project.platform.catalog.uri,
      /tributary\.yaml:6: environment variable TRIBUTARY_TEST_UNSET_PW/,
    );
    // For those who report them: all of them, in every file.
    assert.deepEqual(
      unresolvedPlaceholders(project, { env: {} }).map((e) =>
        e.message.replace(/^.*?(tributary\.yaml|shop\.yaml)/, '$1'),
      ),
      [
        'tributary.yaml:3: cannot read secret file /nonexistent/tributary.key',
        'tributary.yaml:6: environment variable TRIBUTARY_TEST_UNSET_PW is not set',
        'shop.yaml:2: environment variable TRIBUTARY_TEST_UNSET_PASSWORD is not set',
      ],
    );
    // The server needs all of tributary.yaml before it starts.
    assert.throws(
      () => requireResolvedPlatform(project),
      (error: Error & { code?: string; hint?: string }) => {
        assert.equal(error.code, 'CONFIG_SECRET_FILE');
        assert.match(error.message, /tributary\.yaml:3: .* \(and 1 more unresolved\)$/);
        assert.match(error.hint ?? '', /tributary config check/);
        return true;
      },
    );
    const resolved = loadProject(root, { env: { TRIBUTARY_TEST_UNSET_PW: 'pw' } });
    assert.equal(resolved.platform.catalog.uri, 'postgresql://app:pw@db/c');
  });

  it('has no pipelines or sources without their folders', () => {
    const project = loadProject(projectWith({}));
    assert.equal(project.pipelines.size, 0);
    assert.equal(project.sources.size, 0);
  });

  for (const [kind, folder, text] of [
    ['pipeline', 'pipelines', pipeline],
    ['source', 'sources', source],
  ] as const) {
    it(`refuses a ${kind} file whose name is not a ${kind} name, saying how to rename it`, () => {
      const root = projectWith({ [`${folder}/Bad Name.yaml`]: text });
      assert.throws(
        () => loadedAs(root, kind),
        (error: Error & { code?: string; hint?: string }) => {
          assert.equal(error.code, 'CONFIG_INVALID');
          assert.match(error.message, new RegExp(`"Bad Name" is not a valid ${kind} name`));
          assert.match(error.hint ?? '', /rename the file/);
          return true;
        },
      );
    });

    it(`refuses two files of one ${kind} (.yaml and .yml)`, () => {
      const root = projectWith({ [`${folder}/orders.yaml`]: text, [`${folder}/orders.yml`]: text });
      assert.throws(
        () => loadedAs(root, kind),
        (error: Error & { code?: string }) => {
          assert.equal(error.code, 'CONFIG_DUPLICATE');
          assert.equal(error.message, `two files define ${kind} "orders" (.yaml and .yml)`);
          return true;
        },
      );
    });
  }
});
