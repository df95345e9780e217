import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { describe, it } from 'node:test';
import { decodeBody, decodeUtf8, encodingOf, formatOf, nestedDeeperThan, parseEvents } from './body.ts';
import { HttpError } from './http-error.ts';

function status(fn: () => unknown): number | undefined {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof HttpError, String(error));
    return error.status;
  }
  return undefined;
}

describe('request bodies', () => {
  it('reads JSON and NDJSON content types, in UTF-8 only', () => {
    assert.equal(formatOf('application/json'), 'json');
    assert.equal(formatOf('Application/JSON; charset=UTF-8'), 'json');
    assert.equal(formatOf('application/vnd.api+json'), 'json');
    assert.equal(formatOf('text/plain'), 'json');
    assert.equal(formatOf('application/x-ndjson'), 'ndjson');
    assert.equal(formatOf('application/json; charset=latin1'), undefined);
    assert.equal(formatOf('text/xml'), undefined);
    assert.equal(formatOf(undefined), undefined);
    assert.equal(encodingOf('gzip'), 'gzip');
    assert.equal(encodingOf(undefined), 'identity');
    assert.equal(encodingOf('br'), undefined);
  });

  it("gives each object of a JSON body its original bytes, never a non-object's", () => {
    const text = ' [ {"a":"}\\"{"} ,1,"{x}", [{"b":2}] ,\n{ "c" : [ {} ] } ]';
    const bytes = new TextEncoder().encode(text);
    const items = parseEvents(text, 'json', 10, bytes);
    const sources = items.map((item) => item.source && new TextDecoder().decode(item.source));
    assert.deepEqual(sources, ['{"a":"}\\"{"}', undefined, undefined, undefined, '{ "c" : [ {} ] }']);
    for (const item of items)
      if (item.source) assert.deepEqual(JSON.parse(new TextDecoder().decode(item.source)), item.value);
    const one = new TextEncoder().encode('\ufeff\n {"a": 1}\n');
    assert.equal(new TextDecoder().decode(parseEvents('{"a": 1}', 'json', 1, one)[0]!.source), '{"a": 1}');
  });

  it('parses an object, an array and NDJSON; bad NDJSON lines fail alone', () => {
    assert.deepEqual(parseEvents('{"a":1}', 'json', 10), [{ index: 0, value: { a: 1 } }]);
    assert.equal(parseEvents('[{"a":1},{"a":2}]', 'json', 10).length, 2);
    const lines = parseEvents('{"a":1}\r\n\n{bad\n{"a":3}\n', 'ndjson', 10);
    assert.equal(lines.length, 3);
    assert.equal(lines[1]!.line, 3);
    assert.match(lines[1]!.parseError!, /line 3 is not valid JSON/);
    assert.deepEqual(lines[2]!.value, { a: 3 });
  });

  it('refuses empty, truncated, scalar and oversized bodies', () => {
    assert.equal(
      status(() => parseEvents('', 'json', 10)),
      400,
    );
    assert.equal(
      status(() => parseEvents('  \n', 'ndjson', 10)),
      400,
    );
    assert.equal(
      status(() => parseEvents('[]', 'json', 10)),
      400,
    );
    assert.equal(
      status(() => parseEvents('{"a":', 'json', 10)),
      400,
    );
    assert.equal(
      status(() => parseEvents('42', 'json', 10)),
      400,
    );
    assert.equal(
      status(() => parseEvents('null', 'json', 10)),
      400,
    );
    assert.equal(
      status(() => parseEvents('[{},{},{}]', 'json', 2)),
      413,
    );
    assert.equal(
      status(() => parseEvents('{}\n{}\n{}', 'ndjson', 2)),
      413,
    );
  });

  it('refuses invalid UTF-8 and measures nesting without recursing past the limit', () => {
    assert.equal(
      status(() => decodeUtf8(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]))),
      400,
    );
    assert.equal(decodeUtf8(Buffer.from('{"é":"✓"}')), '{"é":"✓"}');
    const deep = JSON.parse('['.repeat(100_000) + ']'.repeat(100_000)) as unknown;
    assert.equal(nestedDeeperThan(deep, 64), true);
    assert.equal(nestedDeeperThan({ a: { b: [1, { c: 2 }] } }, 4), false);
    assert.equal(nestedDeeperThan({ a: { b: [1, { c: 2 }] } }, 3), true);
  });

  it('decodes gzip within the limit and refuses bombs and garbage', async () => {
    const small = gzipSync('{"a":1}');
    assert.equal((await decodeBody(small, 'gzip', 100)).toString(), '{"a":1}');
    const bomb = gzipSync(Buffer.alloc(10_000_000, 0x20));
    await assert.rejects(decodeBody(bomb, 'gzip', 1_000_000), (e: HttpError) => e.status === 413);
    await assert.rejects(
      decodeBody(Buffer.from('not gzip'), 'gzip', 100),
      (e: HttpError) => e.status === 400,
    );
  });
});
