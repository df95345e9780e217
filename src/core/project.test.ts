import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { loadProject } from './project.ts';

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
