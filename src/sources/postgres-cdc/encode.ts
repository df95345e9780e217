/**
 * Change records as JSON text, built directly from PostgreSQL's text values (no intermediate objects: the
 * hot path of streaming and snapshots). `rowObject` in values.ts is the same mapping as objects; the tests
 * check that both agree.
 */
import { convertValue, type PgType } from './values.ts';

type Writer = (text: string) => string;

const SPECIAL_FLOATS = new Set(['NaN', 'Infinity', '-Infinity']);
const quote = (text: string) => JSON.stringify(text);

function writerFor(type: PgType): Writer {
  if (type.kind === 'array') return (text) => JSON.stringify(convertValue(type, text));
  switch (type.scalar) {
    case 'bool':
      return (text) => (text === 't' ? 'true' : 'false');
    case 'int':
    case 'int2':
      return (text) => text; // PostgreSQL's integer text is a JSON number
    case 'int8':
      return (text) => (Number.isSafeInteger(Number(text)) ? text : `"${text}"`);
    case 'float':
    case 'float4':
      // PostgreSQL writes 1e+30, which JSON reads; NaN and the infinities are not JSON numbers.
      return (text) => (SPECIAL_FLOATS.has(text) ? `"${text}"` : String(Number(text)));
    case 'numeric':
    case 'date':
    case 'time':
    case 'uuid':
    case 'interval':
      return (text) => `"${text}"`; // digits, signs, dashes, colons, letters: nothing to escape
    case 'timestamp':
    case 'timestamptz':
      return (text) => `"${convertValue(type, text) as string}"`;
    default:
      return quote;
  }
}

/** Writes rows of one shape (a relation, a snapshot query) as JSON objects. */
export class RowEncoder {
  readonly #names: string[];
  readonly #writers: Writer[];

  constructor(names: readonly string[], types: readonly PgType[]) {
    this.#names = names.map((n) => `${quote(n)}:`);
    this.#writers = types.map(writerFor);
  }

  /** `{"col":value,…}`; unchanged TOASTed values (undefined) are left out, NULL is null. */
  json(values: ReadonlyArray<string | null | undefined>): string {
    let out = '{';
    let first = true;
    for (let i = 0; i < this.#names.length; i++) {
      const value = values[i];
      if (value === undefined) continue;
      if (!first) out += ',';
      first = false;
      out += this.#names[i]!;
      out += value === null ? 'null' : this.#writers[i]!(value);
    }
    return `${out}}`;
  }
}

export interface EnvelopeParts {
  readonly op: string;
  /** The table name as a JSON string. */
  readonly table: string;
  readonly key: string;
  readonly before: string;
  readonly lsn: string;
  readonly commitLsn: string;
  readonly commitTime: string;
  readonly xid: number | null;
  readonly seq: number;
}

/** A change record's JSON (fields as docs/cdc.md lists them). */
export function envelopeJson(p: EnvelopeParts, after: string): string {
  return `{"op":"${p.op}","table":${p.table},"key":${p.key},"before":${p.before},"after":${after},"lsn":"${p.lsn}","commit_lsn":"${p.commitLsn}","commit_time":"${p.commitTime}","xid":${p.xid ?? 'null'},"seq":${p.seq}}`;
}

const utf8 = new TextEncoder();

/**
 * The UTF-8 of each text, as views into one array: one encoding call and one allocation for a whole
 * append instead of one per record.
 */
export function encodeTexts(texts: readonly string[]): Uint8Array[] {
  const joined = texts.join('');
  const bytes = utf8.encode(joined);
  const views: Uint8Array[] = new Array<Uint8Array>(texts.length);
  let at = 0;
  // ASCII only (the common case): a byte per UTF-16 unit.
  const ascii = bytes.length === joined.length;
  for (let i = 0; i < texts.length; i++) {
    const length = ascii ? texts[i]!.length : Buffer.byteLength(texts[i]!, 'utf8');
    views[i] = bytes.subarray(at, at + length);
    at += length;
  }
  // Texts that end and start with halves of a surrogate pair would encode as one character when joined.
  if (at !== bytes.length) return texts.map((text) => utf8.encode(text));
  return views;
}
