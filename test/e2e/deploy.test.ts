/**
 * The project deploy/kubernetes ships: the ConfigMap's files, mounted where the StatefulSet mounts them,
 * pass `tributary doctor` — with the catalog on SQLite and /data in a temporary directory, the parts a
 * cluster provides.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { it } from 'node:test';
import { parse, parseAllDocuments } from 'yaml';
import { REPO_ROOT } from '../services/harness.ts';
import { tributary } from '../cli.ts';

interface Mount {
  readonly name: string;
  readonly mountPath: string;
  readonly subPath?: string;
}

it('the Kubernetes manifests mount a project whose pipelines read what its streams write', async () => {
  const manifests = path.join(REPO_ROOT, 'deploy', 'kubernetes');
  const configMap = parse(readFileSync(path.join(manifests, 'configmap.yaml'), 'utf8')) as {
    data: Record<string, string>;
  };
  const statefulSet = parseAllDocuments(readFileSync(path.join(manifests, 'tributary.yaml'), 'utf8'))
    .map(
      (doc) =>
        doc.toJS() as {
          kind: string;
          spec: { template: { spec: { containers: { volumeMounts: Mount[] }[] } } };
        },
    )
    .find((doc) => doc.kind === 'StatefulSet');
  assert.ok(statefulSet);
  const dir = mkdtempSync(path.join(tmpdir(), 'tributary-deploy-'));
  const data = path.join(dir, 'data');
  const mounted = statefulSet.spec.template.spec.containers[0]!.volumeMounts.filter(
    (mount) => mount.name === 'project' && mount.subPath,
  );
  assert.deepEqual(mounted.map((mount) => mount.subPath).sort(), Object.keys(configMap.data).sort());
  for (const mount of mounted) {
    assert.ok(mount.mountPath.startsWith('/project/'), mount.mountPath);
    const file = path.join(dir, mount.mountPath.slice('/project/'.length));
    mkdirSync(path.dirname(file), { recursive: true });
    let text = configMap.data[mount.subPath!]!;
    if (mount.subPath === 'tributary.yaml')
      text = text
        .replaceAll('/data/', `${data}/`)
        .replace(/^( *)uri: postgresql:.*$/m, '$1uri: sqlite:catalog.db')
        .replace(/^( *)port: 8080$/m, '$1port: 0');
    writeFileSync(file, text);
  }
  const doctor = await tributary(['doctor', '--json'], { cwd: dir });
  assert.equal(doctor.code, 0, doctor.stdout + doctor.stderr);
  const outcomes = JSON.parse(doctor.stdout) as {
    component: string;
    name: string;
    result: { status: string; detail: string };
  }[];
  const notPassed = outcomes.filter(
    // No key exists before `tributary keys create`, which the deployment leaves to its operator.
    (outcome) => outcome.result.status !== 'pass' && outcome.name !== 'streams have keys',
  );
  assert.deepEqual(notPassed, []);
  assert.ok(outcomes.some((outcome) => outcome.name === 'streams configured'));
});
