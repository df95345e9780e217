/**
 * The models of a project, read from `models/`: each `models/<namespace>/<name>.sql` is one model writing
 * the table `<namespace>.<name>` (or its `table:` setting), configured by a YAML header comment or a
 * `.yaml` sidecar; `models/tests.yaml` holds data tests on any table and `models/schedule.yaml` the
 * scheduler's settings. Refs (`ref('silver.orders')`) make the dependency graph (graph.ts).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import {
  parseTableIdentifier,
  tableIdentifierToString,
  type TableIdentifier,
} from '../../catalog/identifier.ts';
import { TributaryError } from '../../errors.ts';
import {
  modelConfigSchema,
  scheduleFileSchema,
  testsFileSchema,
  type DataTestConfig,
  type ModelConfig,
  type ScheduleFile,
} from './config.ts';
import { parseYamlConfig } from './yaml.ts';

export const MODELS_DIR = 'models';
export const TESTS_FILE = 'tests.yaml';
export const SCHEDULE_FILE = 'schedule.yaml';

export interface Model {
  /** The table it writes, dotted (gold.daily_revenue): the model's name everywhere. */
  readonly name: string;
  readonly identifier: TableIdentifier;
  readonly file: string;
  /** Where the configuration came from: the SQL header, a sidecar file, or nowhere (defaults). */
  readonly configFile: string | undefined;
  /** The SQL with refs, the header removed. */
  readonly sql: string;
  readonly config: ModelConfig;
  /** The tables it refers to (dotted, resolved: models by name, other tables as written). */
  readonly refs: readonly string[];
}

export interface ModelProject {
  readonly root: string;
  readonly dir: string;
  /** By table name. */
  readonly models: ReadonlyMap<string, Model>;
  /** Tests from models/tests.yaml, by table name. */
  readonly tableTests: ReadonlyMap<string, readonly DataTestConfig[]>;
  readonly schedule: ScheduleFile;
  readonly scheduleFile: string | undefined;
}

export interface LoadModelsOptions {
  readonly env?: Readonly<Record<string, string | undefined>>;
}

/** `ref('…')` or `ref("…")`. */
export const REF_PATTERN = /\bref\(\s*(['"])([^'"]+)\1\s*\)/g;

function sqlFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const found: string[] = [];
  for (const entry of readdirSync(dir).sort()) {
    const full = path.join(dir, entry);
    if (statSync(full).isDirectory()) found.push(...sqlFiles(full));
    else if (entry.endsWith('.sql')) found.push(full);
  }
  return found;
}

/** The YAML header of a model file, and the SQL after it. */
export function splitHeader(text: string): { yaml: string | undefined; sql: string; lineOffset: number } {
  const leading = /^\s*/.exec(text)?.[0] ?? '';
  const rest = text.slice(leading.length);
  const linesBefore = leading.split('\n').length - 1;
  if (rest.startsWith('/*')) {
    // The comment ends at a `*/` that ends its line: a cron schedule such as "*/15 * * * *" holds one too.
    const close = /\*\/[ \t]*(?:\r?\n|$)/.exec(rest.slice(2));
    if (!close) return { yaml: undefined, sql: text, lineOffset: 0 };
    const end = close.index + 2;
    const body = rest.slice(2, end);
    // `/* --- … --- */`, or a block whose first line is a `key:`; any other comment is just a comment.
    const first = body.split('\n').find((line) => line.trim() !== '') ?? '';
    if (!/^\s*---\s*$/.test(first) && !/^\s*[a-z_]+\s*:/.test(first))
      return { yaml: undefined, sql: text, lineOffset: 0 };
    const yaml = body.replace(/^\s*---\s*$/gm, '');
    return { yaml, sql: rest.slice(end + 2), lineOffset: linesBefore };
  }
  const lines = rest.split('\n');
  if (/^--\s*---\s*$/.test(lines[0] ?? '')) {
    const close = lines.findIndex((line, i) => i > 0 && /^--\s*---\s*$/.test(line));
    if (close > 0) {
      const yaml = lines
        .slice(1, close)
        .map((line) => line.replace(/^--\s?/, ''))
        .join('\n');
      return { yaml, sql: lines.slice(close + 1).join('\n'), lineOffset: linesBefore + 1 };
    }
  }
  return { yaml: undefined, sql: text, lineOffset: 0 };
}

function readModel(
  dir: string,
  file: string,
  options: LoadModelsOptions,
): Omit<Model, 'refs'> & { rawRefs: string[] } {
  const text = readFileSync(file, 'utf8');
  const { yaml, sql, lineOffset } = splitHeader(text);
  const base = file.slice(0, -'.sql'.length);
  const sidecar = ['.yaml', '.yml'].map((ext) => base + ext).find((f) => existsSync(f));
  if (yaml !== undefined && sidecar) {
    throw new TributaryError(
      'CONFIG_DUPLICATE',
      `${path.relative(process.cwd(), file)} has a YAML header and a sidecar ${path.basename(sidecar)}`,
      { hint: 'keep the configuration in one place' },
    );
  }
  const config = sidecar
    ? parseYamlConfig(
        { file: sidecar, text: readFileSync(sidecar, 'utf8'), env: options.env },
        modelConfigSchema,
      )
    : parseYamlConfig({ file, text: yaml ?? '', lineOffset, env: options.env }, modelConfigSchema);
  const relative = path.relative(dir, base).split(path.sep);
  let identifier: TableIdentifier;
  if (config.table) identifier = parseTableIdentifier(config.table);
  else if (relative.length >= 2) identifier = parseTableIdentifier(relative.join('.'));
  else {
    throw new TributaryError(
      'CONFIG_INVALID',
      `${path.relative(process.cwd(), file)}: the model has no namespace`,
      { hint: 'put it in a folder named after its namespace (models/gold/x.sql), or set table: gold.x' },
    );
  }
  const rawRefs = [...sql.matchAll(REF_PATTERN)].map((m) => m[2]!);
  if (!sql.trim()) {
    throw new TributaryError('CONFIG_INVALID', `${path.relative(process.cwd(), file)} has no SQL`, {
      hint: 'write a SELECT statement after the header',
    });
  }
  return {
    name: tableIdentifierToString(identifier),
    identifier,
    file,
    configFile: sidecar ?? (yaml !== undefined ? file : undefined),
    sql,
    config,
    rawRefs,
  };
}

export function loadModels(root: string, options: LoadModelsOptions = {}): ModelProject {
  const dir = path.join(root, MODELS_DIR);
  const read = sqlFiles(dir).map((file) => readModel(dir, file, options));
  const byName = new Map<string, (typeof read)[number]>();
  for (const model of read) {
    const other = byName.get(model.name);
    if (other) {
      throw new TributaryError(
        'CONFIG_DUPLICATE',
        `two models write ${model.name}: ${path.relative(root, other.file)} and ${path.relative(root, model.file)}`,
        { hint: 'give one of them another table: setting' },
      );
    }
    byName.set(model.name, model);
  }
  const shortNames = new Map<string, string[]>();
  for (const name of byName.keys()) {
    const short = name.slice(name.lastIndexOf('.') + 1);
    shortNames.set(short, [...(shortNames.get(short) ?? []), name]);
  }
  const models = new Map<string, Model>();
  for (const { rawRefs, ...model } of read) {
    const refs = rawRefs.map((ref) => resolveRef(ref, byName, shortNames, model.file));
    models.set(model.name, { ...model, refs: [...new Set(refs)] });
  }
  const testsPath = path.join(dir, TESTS_FILE);
  const tableTests = new Map<string, readonly DataTestConfig[]>();
  if (existsSync(testsPath)) {
    const parsed = parseYamlConfig(
      { file: testsPath, text: readFileSync(testsPath, 'utf8'), env: options.env },
      testsFileSchema,
    );
    for (const [table, entry] of Object.entries(parsed.tables)) tableTests.set(table, entry.tests);
  }
  const schedulePath = [SCHEDULE_FILE, 'schedule.yml']
    .map((f) => path.join(dir, f))
    .find((f) => existsSync(f));
  const schedule = parseYamlConfig(
    {
      file: schedulePath ?? path.join(dir, SCHEDULE_FILE),
      text: schedulePath ? readFileSync(schedulePath, 'utf8') : '',
      env: options.env,
    },
    scheduleFileSchema,
  );
  return { root, dir, models, tableTests, schedule, scheduleFile: schedulePath };
}

function resolveRef(
  ref: string,
  models: ReadonlyMap<string, unknown>,
  shortNames: ReadonlyMap<string, string[]>,
  file: string,
): string {
  if (ref.includes('.')) return tableIdentifierToString(parseTableIdentifier(ref));
  const candidates = shortNames.get(ref) ?? [];
  if (candidates.length === 1) return candidates[0]!;
  throw new TributaryError(
    'CONFIG_INVALID',
    `${path.relative(process.cwd(), file)}: ref('${ref}') ${candidates.length ? `is ambiguous (${candidates.join(', ')})` : 'names no model'}`,
    { hint: "write the table's full name, e.g. ref('silver.orders')" },
  );
}

/** A model by its table name or, when unambiguous, its short name. */
export function findModel(project: ModelProject, name: string): Model {
  const exact = project.models.get(name);
  if (exact) return exact;
  const matches = [...project.models.values()].filter((m) => m.identifier.name === name);
  if (matches.length === 1) return matches[0]!;
  throw new TributaryError(
    'USAGE',
    matches.length
      ? `"${name}" names several models: ${matches.map((m) => m.name).join(', ')}`
      : `no model "${name}"`,
    { hint: 'list the models with `tributary models list`' },
  );
}
