/**
 * Iceberg types for DuckDB result columns: a model's table is created with the schema of its query's result
 * (`DESCRIBE`), so every DuckDB type a query can produce maps to an Iceberg type here. Field ids are
 * placeholders (0); `assignFreshIds` numbers them.
 */
import { TributaryError } from '../errors.ts';
import type { IcebergType, NestedField, PrimitiveType, StructType } from '../iceberg/types.ts';

/** The Iceberg type that holds values of a DuckDB type, as DESCRIBE prints it. */
export function icebergTypeOf(duckdbType: string): IcebergType {
  const parser = new TypeParser(duckdbType);
  const type = parser.type();
  parser.end();
  return type;
}

/** A struct of the columns of a DESCRIBE result (name → DuckDB type), all optional. */
export function structOfColumns(columns: ReadonlyMap<string, string>): StructType {
  return {
    type: 'struct',
    fields: [...columns].map(([name, type]) => ({ id: 0, name, required: false, type: icebergTypeOf(type) })),
  };
}

const PRIMITIVES: Record<string, PrimitiveType> = {
  BOOLEAN: 'boolean',
  TINYINT: 'int',
  SMALLINT: 'int',
  INTEGER: 'int',
  UTINYINT: 'int',
  USMALLINT: 'int',
  UINTEGER: 'long',
  BIGINT: 'long',
  // sum() of integers is a HUGEINT in DuckDB: kept as long, the type every reader expects of a count or sum.
  HUGEINT: 'long',
  UBIGINT: 'long',
  UHUGEINT: 'long',
  FLOAT: 'float',
  DOUBLE: 'double',
  DATE: 'date',
  TIME: 'time',
  TIMESTAMP: 'timestamp',
  TIMESTAMP_S: 'timestamp',
  TIMESTAMP_MS: 'timestamp',
  TIMESTAMP_NS: 'timestamp',
  'TIMESTAMP WITH TIME ZONE': 'timestamptz',
  TIMESTAMPTZ: 'timestamptz',
  VARCHAR: 'string',
  JSON: 'string',
  UUID: 'uuid',
  BLOB: 'binary',
  BIT: 'binary',
  INTERVAL: 'string',
};

class TypeParser {
  readonly #text: string;
  #at = 0;

  constructor(text: string) {
    this.#text = text;
  }

  #fail(why: string): never {
    throw new TributaryError('ICEBERG_UNSUPPORTED', `the DuckDB type ${this.#text} ${why}`, {
      hint: 'cast the column to a supported type (numbers, text, dates, timestamps, lists, structs, maps)',
    });
  }

  #skipSpace(): void {
    while (this.#text[this.#at] === ' ') this.#at++;
  }

  #peek(text: string): boolean {
    this.#skipSpace();
    return this.#text.startsWith(text, this.#at);
  }

  #expect(text: string): void {
    if (!this.#peek(text)) this.#fail(`is not understood (expected "${text}" at ${this.#at})`);
    this.#at += text.length;
  }

  end(): void {
    this.#skipSpace();
    if (this.#at !== this.#text.length) this.#fail(`is not understood (at ${this.#at})`);
  }

  /** A column name: quoted ("a b") or bare. */
  #name(): string {
    this.#skipSpace();
    if (this.#text[this.#at] === '"') {
      let name = '';
      this.#at++;
      for (;;) {
        const ch = this.#text[this.#at++];
        if (ch === undefined) this.#fail('has an unterminated name');
        if (ch === '"') {
          if (this.#text[this.#at] === '"') {
            name += '"';
            this.#at++;
            continue;
          }
          return name;
        }
        name += ch;
      }
    }
    const match = /^[^\s,()"]+/.exec(this.#text.slice(this.#at));
    if (!match) this.#fail(`is not understood (a name expected at ${this.#at})`);
    this.#at += match[0].length;
    return match[0];
  }

  type(): IcebergType {
    this.#skipSpace();
    const rest = this.#text.slice(this.#at);
    let type: IcebergType;
    const head = /^(STRUCT|MAP|DECIMAL|NUMERIC)\s*\(/i.exec(rest);
    if (head) {
      this.#at += head[0].length;
      const kind = head[1]!.toUpperCase();
      if (kind === 'STRUCT') {
        const fields: NestedField[] = [];
        for (;;) {
          const name = this.#name();
          fields.push({ id: 0, name, required: false, type: this.type() });
          if (!this.#peek(',')) break;
          this.#expect(',');
        }
        this.#expect(')');
        type = { type: 'struct', fields };
      } else if (kind === 'MAP') {
        const key = this.type();
        this.#expect(',');
        const value = this.type();
        this.#expect(')');
        type = { type: 'map', 'key-id': 0, key, 'value-id': 0, value, 'value-required': false };
      } else {
        const match = /^\s*(\d+)\s*,\s*(\d+)\s*\)/.exec(this.#text.slice(this.#at));
        if (!match) this.#fail('has a malformed decimal');
        this.#at += match[0].length;
        type = `decimal(${Number(match[1])}, ${Number(match[2])})`;
      }
    } else {
      const names = Object.keys(PRIMITIVES).sort((a, b) => b.length - a.length);
      const name = names.find(
        (n) => rest.toUpperCase().startsWith(n) && !/[A-Z0-9_]/i.test(rest[n.length] ?? ''),
      );
      if (!name) {
        const word = /^[A-Za-z_0-9]+/.exec(rest)?.[0] ?? rest;
        this.#fail(word === rest ? 'is not supported' : `(${word}) is not supported`);
      }
      this.#at += name.length;
      type = PRIMITIVES[name]!;
    }
    // Lists (T[]) and fixed-size arrays (T[3]), possibly nested.
    while (this.#peek('[')) {
      this.#expect('[');
      while (/\d/.test(this.#text[this.#at] ?? '')) this.#at++;
      this.#expect(']');
      type = { type: 'list', 'element-id': 0, element: type, 'element-required': false };
    }
    return type;
  }
}
