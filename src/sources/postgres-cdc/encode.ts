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
    case 'int8':
      return (text) => text; // PostgreSQL's integer text is a JSON number, exact at any size
    case 'float':
    case 'float4':
      // PostgreSQL writes 1e+30, which JSON reads; NaN and the infinities are not JSON numbers.
      return (text) => (SPECIAL_FLOATS.has(text) ? `"${text}"` : String(Number(text)));
    case 'numeric':
    case 'time':
    case 'uuid':
    case 'interval':
      return (text) => `"${text}"`; // digits, signs, dashes, colons, letters: nothing to escape
    case 'date':
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

/**
 * JSON written as bytes into one growing buffer: the values of a snapshot chunk go to the log without a
 * string per record, a join and an encoding pass (most of a snapshot's allocation, and so its garbage
 * collection). ASCII is copied by plain loops, which beat a native call for short values.
 */
export class ByteWriter {
  buffer: Buffer;
  at = 0;

  constructor(capacity: number) {
    this.buffer = Buffer.allocUnsafe(Math.max(capacity, 1024));
  }

  /** Room for `n` more bytes. Views taken before a growth stay valid (they keep the old buffer). */
  reserve(n: number): void {
    if (this.at + n <= this.buffer.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.at + n));
    this.buffer.copy(next, 0, 0, this.at);
    this.buffer = next;
  }

  /** Text known to be ASCII. */
  ascii(text: string): void {
    this.reserve(text.length);
    const buffer = this.buffer;
    let at = this.at;
    for (let i = 0; i < text.length; i++) buffer[at++] = text.charCodeAt(i);
    this.at = at;
  }

  utf8(text: string): void {
    this.reserve(text.length * 3);
    this.at += this.buffer.write(text, this.at, 'utf8');
  }

  bytes(bytes: Uint8Array): void {
    this.reserve(bytes.length);
    this.buffer.set(bytes, this.at);
    this.at += bytes.length;
  }

  uint(n: number): void {
    if (n < 10) {
      this.reserve(1);
      this.buffer[this.at++] = 48 + n;
    } else this.ascii(String(n));
  }

  /** A JSON string, as JSON.stringify writes it: printable ASCII directly, anything else through it. */
  string(text: string): void {
    this.reserve(text.length + 2);
    const buffer = this.buffer;
    const start = this.at;
    let at = start;
    buffer[at++] = 34;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c < 0x20 || c === 34 || c === 92 || c > 0x7e) {
        this.at = start;
        this.utf8(JSON.stringify(text));
        return;
      }
      buffer[at++] = c;
    }
    buffer[at++] = 34;
    this.at = at;
  }

  /** The bytes from `start` to here. */
  view(start: number): Uint8Array {
    return this.buffer.subarray(start, this.at);
  }
}

type ByteWrite = (out: ByteWriter, text: string) => void;

/** The byte writer of a type: the same JSON as `writerFor`, without the intermediate string. */
function byteWriterFor(type: PgType): ByteWrite {
  if (type.kind === 'scalar') {
    switch (type.scalar) {
      case 'bool':
        return (out, text) => out.ascii(text === 't' ? 'true' : 'false');
      case 'int':
      case 'int2':
      case 'int8':
        return (out, text) => out.ascii(text);
      case 'numeric':
      case 'time':
      case 'uuid':
      case 'interval':
        return (out, text) => out.string(text);
      case 'float':
      case 'float4':
      case 'date':
      case 'timestamp':
      case 'timestamptz':
        break;
      default:
        return (out, text) => out.string(text);
    }
  }
  const write = writerFor(type);
  return (out, text) => out.utf8(write(text));
}

const utf8Bytes = (text: string) => Buffer.from(text, 'utf8');

/**
 * Snapshot records of one table and query shape, as `envelopeJson` writes them (op snapshot, no before
 * image, no xid): `begin` a chunk with its position, then `write` each row.
 */
export class SnapshotEncoder {
  readonly #head: Uint8Array;
  readonly #keyNames: Uint8Array[];
  readonly #keyWriters: ByteWrite[];
  readonly #keyIndexes: readonly number[];
  readonly #afterOpen = utf8Bytes('},"before":null,"after":{');
  readonly #names: Uint8Array[];
  readonly #writers: ByteWrite[];
  #tail: Uint8Array = utf8Bytes('');

  constructor(
    table: string,
    names: readonly string[],
    types: readonly PgType[],
    keyIndexes: readonly number[],
  ) {
    this.#head = utf8Bytes(`{"op":"snapshot","table":${quote(table)},"key":{`);
    const member = (name: string, i: number) => utf8Bytes(`${i > 0 ? ',' : ''}${quote(name)}:`);
    this.#names = names.map(member);
    this.#writers = types.map(byteWriterFor);
    this.#keyIndexes = keyIndexes;
    this.#keyNames = keyIndexes.map((k, i) => member(names[k]!, i));
    this.#keyWriters = keyIndexes.map((k) => this.#writers[k]!);
  }

  /** The fields every record of a chunk shares. */
  begin(lsn: string, commitTime: string): void {
    this.#tail = utf8Bytes(
      `},"lsn":"${lsn}","commit_lsn":"${lsn}","commit_time":"${commitTime}","xid":null,"seq":`,
    );
  }

  /** One row's record (NULL values are null); returns its bytes, a view into `out`. */
  write(out: ByteWriter, row: ReadonlyArray<string | null>, seq: number): Uint8Array {
    const start = out.at;
    out.bytes(this.#head);
    for (let i = 0; i < this.#keyIndexes.length; i++) {
      out.bytes(this.#keyNames[i]!);
      const value = row[this.#keyIndexes[i]!];
      if (value === null || value === undefined) out.ascii('null');
      else this.#keyWriters[i]!(out, value);
    }
    out.bytes(this.#afterOpen);
    for (let i = 0; i < this.#names.length; i++) {
      out.bytes(this.#names[i]!);
      const value = row[i];
      if (value === null || value === undefined) out.ascii('null');
      else this.#writers[i]!(out, value);
    }
    out.bytes(this.#tail);
    out.uint(seq);
    out.ascii('}');
    return out.view(start);
  }
}
