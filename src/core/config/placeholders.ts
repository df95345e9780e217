/**
 * `${VAR}`, `${VAR:-default}` and `${file:/path}` placeholders in configuration values.
 *
 * Substitution happens on the parsed YAML tree, value by value, never on the raw text: an environment
 * variable holding a newline, a colon or a `#` cannot change the structure of the file. A plain (unquoted)
 * scalar that is exactly one placeholder takes the YAML type of what it resolves to, so `port: ${PORT}` is
 * a number; quote it (`"${PORT}"`) to keep a string. `$${` writes a literal `${`.
 *
 * A variable that is not set (without a default) or a secret file that cannot be read leaves its value
 * unresolved: the value keeps its text, and the caller learns where it is and why (load-file.ts decides
 * what reading it does). A placeholder that is malformed is a mistake in the file and throws at once.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import {
  isPair,
  isScalar,
  isSeq,
  parse as parseYamlValue,
  Scalar,
  visit,
  type Document,
  type LineCounter,
} from 'yaml';
import { TributaryError } from '../../errors.ts';

const PLACEHOLDER = /\$\$\{|\$\{([^}]*)\}/g;
const VARIABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export interface PlaceholderContext {
  readonly file: string;
  readonly lineCounter: LineCounter;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Where relative `${file:...}` paths are resolved from. */
  readonly baseDir: string;
}

/** Paths (as key lists) of values whose text came from a secret file: they are redacted when printed. */
export type SecretPaths = Array<ReadonlyArray<string | number>>;

/** A value that depends on placeholders that could not be resolved, and why: one error per variable or file. */
export interface UnresolvedValue {
  readonly path: ReadonlyArray<string | number>;
  /** CONFIG_UNRESOLVED_VARIABLE or CONFIG_SECRET_FILE, each naming the file, line and variable or file. */
  readonly errors: readonly TributaryError[];
}

export interface Substitution {
  readonly secretPaths: SecretPaths;
  /** In the order of the file. */
  readonly unresolved: readonly UnresolvedValue[];
}

/**
 * Replaces every placeholder in the document's values in place; returns where secret files were used and
 * which values could not be resolved (those keep their text).
 */
export function substitutePlaceholders(doc: Document, context: PlaceholderContext): Substitution {
  const secretPaths: SecretPaths = [];
  const unresolved: UnresolvedValue[] = [];
  visit(doc, {
    Scalar(key, node, ancestors) {
      if (key === 'key' || typeof node.value !== 'string' || !node.value.includes('${')) return;
      const line = node.range ? context.lineCounter.linePos(node.range[0]).line : 0;
      const { text, usedSecretFile, wholePlaceholder, errors } = resolve(node.value, line, context);
      if (errors.length > 0) {
        unresolved.push({ path: pathOf(ancestors, node), errors });
        return;
      }
      if (usedSecretFile) secretPaths.push(pathOf(ancestors, node));
      const typed = node.type === Scalar.PLAIN && wholePlaceholder ? resolvePlainType(text) : text;
      node.value = typed;
    },
  });
  return { secretPaths, unresolved };
}

function resolve(
  value: string,
  line: number,
  context: PlaceholderContext,
): { text: string; usedSecretFile: boolean; wholePlaceholder: boolean; errors: TributaryError[] } {
  let usedSecretFile = false;
  let count = 0;
  let wholePlaceholder = false;
  const errors: TributaryError[] = [];
  const text = value.replace(PLACEHOLDER, (match: string, body: string | undefined, offset: number) => {
    if (body === undefined) return '${'; // the `$${` escape
    count += 1;
    wholePlaceholder = offset === 0 && match.length === value.length;
    if (body.startsWith('file:')) {
      usedSecretFile = true;
      const secret = readSecretFile(body.slice('file:'.length), line, context);
      if (secret instanceof TributaryError) errors.push(secret);
      return secret instanceof TributaryError ? match : secret;
    }
    const separator = body.indexOf(':-');
    const name = separator === -1 ? body : body.slice(0, separator);
    if (!VARIABLE_NAME.test(name)) {
      throw new TributaryError(
        'CONFIG_INVALID',
        `${context.file}:${line}: "${match}" is not a valid placeholder`,
        {
          context: { file: context.file, line },
          hint: 'write ${NAME}, ${NAME:-default} or ${file:/path/to/secret}; use $${ for a literal ${',
        },
      );
    }
    const fromEnv = context.env[name];
    if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
    if (separator !== -1) return body.slice(separator + 2);
    errors.push(
      new TributaryError(
        'CONFIG_UNRESOLVED_VARIABLE',
        `${context.file}:${line}: environment variable ${name} is not set`,
        {
          context: { file: context.file, line, variable: name },
          hint: `export ${name}=..., or give a default with \${${name}:-value}`,
        },
      ),
    );
    return match;
  });
  return { text, usedSecretFile, wholePlaceholder: wholePlaceholder && count === 1, errors };
}

function readSecretFile(
  filePath: string,
  line: number,
  context: PlaceholderContext,
): string | TributaryError {
  const resolved = path.resolve(context.baseDir, filePath);
  try {
    // Secret files conventionally end with one newline (Kubernetes, Docker secrets); it is not part of the secret.
    return readFileSync(resolved, 'utf8').replace(/\r?\n$/, '');
  } catch (cause) {
    return new TributaryError(
      'CONFIG_SECRET_FILE',
      `${context.file}:${line}: cannot read secret file ${resolved}`,
      {
        context: { file: context.file, line, secretFile: resolved },
        cause,
        hint: 'check that the file exists and is readable by this process',
      },
    );
  }
}

/** The YAML 1.2 core-schema type of a substituted plain scalar: numbers, booleans and null stay typed. */
function resolvePlainType(text: string): unknown {
  try {
    const value: unknown = parseYamlValue(text);
    return value === null || typeof value === 'number' || typeof value === 'boolean' ? value : text;
  } catch {
    return text;
  }
}

function pathOf(ancestors: readonly unknown[], node: unknown): Array<string | number> {
  const result: Array<string | number> = [];
  const chain = [...ancestors, node];
  for (let i = 0; i < chain.length - 1; i++) {
    const parent = chain[i];
    if (isSeq(parent)) result.push(parent.items.indexOf(chain[i + 1]));
    else if (isPair(parent) && isScalar(parent.key)) result.push(String(parent.key.value));
  }
  return result;
}
