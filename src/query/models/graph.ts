/**
 * The dependency graph of models, from their refs: a model depends on the models whose tables it refers to;
 * other tables it refers to are sources. Runs go in topological order; a cycle is a CONFIG_INVALID error
 * that names it. Selection: `name` (one model), `name+` (and everything downstream), `+name` (and
 * everything upstream), `namespace.*`.
 */
import { TributaryError } from '../../errors.ts';
import { findModel, type Model, type ModelProject } from './project.ts';

/** The models a model reads (refs that are models). */
export function upstreamModels(project: ModelProject, model: Model): Model[] {
  return model.refs.flatMap((ref) => {
    const found = project.models.get(ref);
    return found ? [found] : [];
  });
}

/** Tables a model reads that no model writes. */
export function sourceTables(project: ModelProject, model: Model): string[] {
  return model.refs.filter((ref) => !project.models.has(ref));
}

/** Every model, dependencies first (stable: by name within a level). CONFIG_INVALID on a cycle. */
export function topologicalOrder(project: ModelProject): Model[] {
  const state = new Map<string, 'visiting' | 'done'>();
  const order: Model[] = [];
  const stack: string[] = [];
  const visit = (model: Model) => {
    const seen = state.get(model.name);
    if (seen === 'done') return;
    if (seen === 'visiting') {
      const cycle = [...stack.slice(stack.indexOf(model.name)), model.name];
      throw new TributaryError('CONFIG_INVALID', `models form a cycle: ${cycle.join(' → ')}`, {
        hint: 'a model cannot read, directly or through other models, the table it writes: remove one ref',
        context: { cycle },
      });
    }
    state.set(model.name, 'visiting');
    stack.push(model.name);
    for (const upstream of upstreamModels(project, model).sort((a, b) => a.name.localeCompare(b.name)))
      visit(upstream);
    stack.pop();
    state.set(model.name, 'done');
    order.push(model);
  };
  for (const model of [...project.models.values()].sort((a, b) => a.name.localeCompare(b.name))) visit(model);
  return order;
}

function downstreamOf(project: ModelProject, names: Set<string>): void {
  let grew = true;
  while (grew) {
    grew = false;
    for (const model of project.models.values()) {
      if (!names.has(model.name) && model.refs.some((r) => names.has(r))) {
        names.add(model.name);
        grew = true;
      }
    }
  }
}

function upstreamOf(project: ModelProject, names: Set<string>): void {
  const queue = [...names];
  while (queue.length) {
    const model = project.models.get(queue.pop()!);
    for (const upstream of model ? upstreamModels(project, model) : []) {
      if (!names.has(upstream.name)) {
        names.add(upstream.name);
        queue.push(upstream.name);
      }
    }
  }
}

/** The models `selectors` name, in run order; all models when there are no selectors. */
export function selectModels(project: ModelProject, selectors: readonly string[] = []): Model[] {
  const order = topologicalOrder(project);
  if (selectors.length === 0) return order;
  const chosen = new Set<string>();
  for (const raw of selectors.flatMap((s) => s.split(/[\s,]+/)).filter(Boolean)) {
    const up = raw.startsWith('+');
    const down = raw.endsWith('+');
    const name = raw.replace(/^\+|\+$/g, '');
    const picked = new Set<string>();
    if (name.includes('*')) {
      const pattern = new RegExp(`^${name.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
      for (const model of project.models.values()) if (pattern.test(model.name)) picked.add(model.name);
      if (picked.size === 0)
        throw new TributaryError('USAGE', `--select ${raw} matches no model`, {
          hint: 'list the models with `tributary models list`',
        });
    } else picked.add(findModel(project, name).name);
    if (down) downstreamOf(project, picked);
    if (up) upstreamOf(project, picked);
    for (const n of picked) chosen.add(n);
  }
  return order.filter((m) => chosen.has(m.name));
}

function mermaidId(name: string): string {
  return name.replace(/[^A-Za-z0-9_]/g, '_');
}

/** The graph as Mermaid (`flowchart LR`) or Graphviz DOT: models as boxes, sources as cylinders. */
export function renderGraph(project: ModelProject, format: 'mermaid' | 'dot'): string {
  const models = topologicalOrder(project);
  const sources = [...new Set(models.flatMap((m) => sourceTables(project, m)))].sort();
  const edges = models.flatMap((m) => m.refs.map((ref) => [ref, m.name] as const));
  if (format === 'dot') {
    const q = (s: string) => `"${s.replace(/"/g, '\\"')}"`;
    return [
      'digraph models {',
      '  rankdir=LR;',
      ...sources.map((s) => `  ${q(s)} [shape=cylinder];`),
      ...models.map((m) => `  ${q(m.name)} [shape=box, label=${q(`${m.name}\\n${m.config.materialized}`)}];`),
      ...edges.map(([from, to]) => `  ${q(from)} -> ${q(to)};`),
      '}',
    ].join('\n');
  }
  return [
    'flowchart LR',
    ...sources.map((s) => `  ${mermaidId(s)}[(${s})]`),
    ...models.map((m) => `  ${mermaidId(m.name)}["${m.name}<br/>${m.config.materialized}"]`),
    ...edges.map(([from, to]) => `  ${mermaidId(from)} --> ${mermaidId(to)}`),
  ].join('\n');
}
