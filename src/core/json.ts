/**
 * JSON whose integers stay exact beyond ±2^53. JSON.parse reads every number as a double, which holds an
 * integer exactly only up to 2^53 (9007199254740992): 64-bit ids, snowflakes and uint64 counters lose
 * their last digits. `parseJsonExact` reads such an integer as a `BigInteger` instead — JSON.rawJSON of
 * its digits — which JSON.stringify writes back as the very number it was read from. Every other value
 * is what JSON.parse gives: safe integers, fractions and exponents stay numbers (doubles).
 *
 * A BigInteger is an object: typeof 'object', frozen, null prototype, one own property `rawJSON` (the
 * digits). Code that treats objects as nested fields tests `isBigInteger` first, and never calls
 * String() or a template literal on one (an object without a prototype has no toString): use
 * `numberText`, `rawJSON` or JSON.stringify. Only this module makes BigIntegers (`exactInteger` is the
 * way in for other code); `isBigInteger` takes any JSON.rawJSON value for one.
 */

/** An integer beyond ±2^53 read from JSON, exactly: JSON.stringify writes `rawJSON` as it is. */
export interface BigInteger {
  readonly rawJSON: string;
}

/** JSON.rawJSON and JSON.isRawJSON (Node 21+; not in TypeScript's lib yet). */
const RawJson = JSON as unknown as {
  rawJSON(text: string): BigInteger;
  isRawJSON(value: unknown): boolean;
};

const INTEGER = /^-?\d+$/;

/**
 * Whether this process has made a BigInteger yet (they come only from here): until it has, no value can
 * hold one, and `replaceBigIntegers` need not look — the common case, where no integer is that large,
 * costs nothing.
 */
let made = false;

function bigInteger(digits: string): BigInteger {
  made = true;
  return RawJson.rawJSON(digits);
}

interface ReviverContext {
  readonly source?: string;
}

function exactReviver(_key: string, value: unknown, context?: ReviverContext): unknown {
  if (typeof value !== 'number' || Number.isSafeInteger(value)) return value;
  const source = context?.source;
  return source !== undefined && INTEGER.test(source) ? bigInteger(source) : value;
}

/**
 * JSON.parse, with integers beyond ±2^53 read as BigIntegers. Text that cannot hold one (no run of 16
 * digits: the shortest integer that is not safe, 9007199254740992, has 16) is read by plain JSON.parse,
 * at its speed; the rest, with a reviver, several times slower. Any depth of nesting is read: the
 * reviver, which V8 calls recursively, exhausts the stack a few thousand levels deep, and such text is
 * read again without it (`parseDeep`).
 */
export function parseJsonExact(text: string): unknown {
  if (!mayHoldBigInteger(text)) return JSON.parse(text);
  try {
    return JSON.parse(text, exactReviver);
  } catch (error) {
    if (error instanceof RangeError) return parseDeep(text);
    throw error;
  }
}

/** A JSON token: an opening or closing bracket, a string (a key when a colon follows), or a scalar. */
const TOKEN = /[\s,]*(?:([[{])|[\]}]|("[^"\\]*(?:\\.[^"\\]*)*")(\s*:)?|([^\s,\]}]+))/y;

/**
 * What `JSON.parse(text, exactReviver)` gives, read with a stack of open containers instead of recursion.
 * Strings and scalars are read by JSON.parse, and members are defined (a `__proto__` key stays data, a
 * repeated key keeps its first place and its last value), as JSON.parse does.
 */
function parseDeep(text: string): unknown {
  JSON.parse(text); // the same error for invalid text; below, the text is valid JSON
  const open: Array<unknown[] | Record<string, unknown>> = [];
  let key = '';
  let root: unknown;
  const add = (value: unknown) => {
    const parent = open.at(-1);
    if (parent === undefined) root = value;
    else if (Array.isArray(parent)) parent.push(value);
    else Object.defineProperty(parent, key, { value, writable: true, enumerable: true, configurable: true });
  };
  TOKEN.lastIndex = 0;
  for (let match = TOKEN.exec(text); match !== null; match = TOKEN.exec(text)) {
    const [, bracket, string, colon, scalar] = match;
    if (bracket !== undefined) {
      const container = bracket === '[' ? [] : {};
      add(container);
      open.push(container);
    } else if (string !== undefined) {
      if (colon === undefined) add(JSON.parse(string));
      else key = JSON.parse(string) as string;
    } else if (scalar !== undefined) {
      add(exactReviver('', JSON.parse(scalar), { source: scalar }));
    } else open.pop();
  }
  return root;
}

/**
 * Whether `text` has a run of 16 or more ASCII digits. Such a run covers one of every 16 consecutive
 * positions, so only every 16th character is looked at until a digit turns up: about 1/16 of the text.
 */
export function mayHoldBigInteger(text: string): boolean {
  const length = text.length;
  for (let i = 15; i < length; i += 16) {
    if (!isDigit(text.charCodeAt(i))) continue;
    let start = i;
    while (start > 0 && isDigit(text.charCodeAt(start - 1))) start--;
    let end = i + 1;
    while (end < length && isDigit(text.charCodeAt(end))) end++;
    if (end - start >= 16) return true;
    i = end; // the next run starts past this one's end (the loop adds 16)
  }
  return false;
}

function isDigit(code: number): boolean {
  return code >= 0x30 && code <= 0x39;
}

export function isBigInteger(value: unknown): value is BigInteger {
  return typeof value === 'object' && value !== null && RawJson.isRawJSON(value);
}

/**
 * An exact integer as a JSON value: a number when it is safe, else a BigInteger. Use it (not
 * JSON.rawJSON) to make one.
 */
export function exactInteger(value: bigint): number | BigInteger {
  const number = Number(value);
  return Number.isSafeInteger(number) ? number : bigInteger(value.toString());
}

/** The digits of a BigInteger or the text of a number, as JSON writes them; undefined for anything else. */
export function numberText(value: unknown): string | undefined {
  if (typeof value === 'number') return JSON.stringify(value);
  return isBigInteger(value) ? value.rawJSON : undefined;
}

/** The double nearest to a BigInteger (what JSON.parse reads), for code that knows numbers only (ajv). */
export function nearestNumber(value: BigInteger): number {
  return Number(value.rawJSON);
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** Whether a BigInteger fits a signed 64-bit integer (Iceberg long, PostgreSQL bigint, DuckDB BIGINT). */
export function fitsInt64(value: BigInteger): boolean {
  const digits = value.rawJSON.length - (value.rawJSON.startsWith('-') ? 1 : 0);
  if (digits < 19) return true;
  if (digits > 19) return false;
  const integer = BigInt(value.rawJSON);
  return integer >= INT64_MIN && integer <= INT64_MAX;
}

/**
 * `value` with every BigInteger replaced by `replace(it)`: the same object when it holds none, else a copy
 * of the objects and arrays that lead to one (the input is never changed).
 */
export function replaceBigIntegers(value: unknown, replace: (integer: BigInteger) => unknown): unknown {
  return made ? replaceLeaves(value, (leaf) => (isBigInteger(leaf) ? replace(leaf) : leaf)) : value;
}

/**
 * `value` with each leaf — anything but an array or a plain object; a BigInteger is a leaf — replaced by
 * `replace(leaf)`: the same object when nothing changed, else a copy of the arrays and objects that lead to
 * a change (the input is never changed).
 */
export function replaceLeaves(value: unknown, replace: (leaf: unknown) => unknown): unknown {
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      const replaced = replaceLeaves(item, replace);
      if (replaced !== item) (copy ??= [...(value as unknown[])])[i] = replaced;
    }
    return copy ?? value;
  }
  if (typeof value !== 'object' || value === null || isBigInteger(value)) return replace(value);
  const prototype = Object.getPrototypeOf(value) as unknown;
  if (prototype !== Object.prototype && prototype !== null) return replace(value);
  let copy: Record<string, unknown> | undefined;
  const object = value as Record<string, unknown>;
  for (const key in object) {
    if (!Object.hasOwn(object, key)) continue;
    const item = object[key];
    const replaced = replaceLeaves(item, replace);
    if (replaced !== item) (copy ??= { ...object })[key] = replaced;
  }
  return copy ?? value;
}

/**
 * JSON.stringify, but a number that is not finite keeps its meaning: JSON.stringify writes null for
 * Infinity, -Infinity and NaN (a transform's result, or 1e400 as JSON.parse reads it), and the value would
 * be taken for a null. Here ±Infinity is written as a number beyond every range, ±1e999 (which JSON.parse
 * reads back as ±Infinity, and a typed reader refuses as out of range), and NaN as the text "NaN". Costs a
 * search of the text for "null", and a second pass only when it has one.
 */
export function stringifyExact(value: unknown): string {
  const text = JSON.stringify(value) as string | undefined;
  if (text === undefined || !text.includes('null')) return text ?? 'null';
  const finite = replaceLeaves(value, (leaf) =>
    typeof leaf !== 'number' || Number.isFinite(leaf)
      ? leaf
      : Number.isNaN(leaf)
        ? 'NaN'
        : RawJson.rawJSON(leaf > 0 ? '1e999' : '-1e999'),
  );
  return finite === value ? text : JSON.stringify(finite);
}
