import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { describe, it } from 'node:test';
import {
  decodeBody,
  decodeUtf8,
  encodingOf,
  formatOf,
  membersWithin,
  parseEvents,
  scanEvents,
} from './body.ts';
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

  it('counts the members of each object in its bytes, at every depth, so that a repeated key shows', () => {
    const members = (text: string) =>
      parseEvents(text, 'json', 10, new TextEncoder().encode(text)).map((item) => [
        item.members,
        membersWithin(item.value, 64),
      ]);
    assert.deepEqual(members('[{"a":1,"b":{"c":":","c":[{"d":2}]}}, [{"x":1}], {"a":{}}, {"":"a\\":"}]'), [
      [5, 4],
      [undefined, 1],
      [1, 1],
      [1, 1],
    ]);
    assert.deepEqual(members(' {"a":1, "a":2}\n'), [[2, 1]]);
    assert.deepEqual(members('{"__proto__":{"a":1},"b":[]}'), [[3, 3]]);
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
    assert.equal(membersWithin(deep, 64) < 0, true);
    assert.equal(membersWithin({ a: { b: [1, { c: 2 }] } }, 4) < 0, false);
    assert.equal(membersWithin({ a: { b: [1, { c: 2 }] } }, 3) < 0, true);
  });

  it('leaves an event nested past the stack to the depth check, also beside an integer beyond 2^53', () => {
    const deep = `{"name":"deep","a":${'['.repeat(20_000)}${']'.repeat(20_000)}}`;
    const ok = '{"name":"ok","n":12345678901234567890}';
    const text = `[${ok},${deep}]`;
    const items = parseEvents(text, 'json', 10, new TextEncoder().encode(text));
    assert.equal(JSON.stringify(items[0]!.value), ok, 'exact');
    assert.equal(membersWithin(items[1]!.value, 64) < 0, true);
    const lines = parseEvents(
      `${ok}\n${deep.replace('"deep"', '"deep","n":12345678901234567890')}`,
      'ndjson',
      10,
    );
    assert.deepEqual(
      lines.map((line) => line.parseError),
      [undefined, undefined],
    );
    assert.equal(membersWithin(lines[1]!.value, 64) < 0, true);
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

describe('scanEvents', () => {
  const scan = (text: string, maxDepth = 64, maxEvents = 1000) =>
    scanEvents(Buffer.from(text), maxEvents, maxDepth, 'id');

  it('takes objects and arrays of objects as they are, with their ids', () => {
    const body =
      ' [ {"id":"a-1","n":1.5e3,"t":true,"x":null,"nested":{"l":[1,{"m":"\\u00e9\\n"}]}} ,\n{"b":"ü"},{"id":null}]\n';
    const items = scan(body)!;
    assert.equal(items.length, 3);
    assert.deepEqual(
      items.map((i) => [i.index, i.id, Buffer.from(i.source!).toString()]),
      [
        [0, 'a-1', '{"id":"a-1","n":1.5e3,"t":true,"x":null,"nested":{"l":[1,{"m":"\\u00e9\\n"}]}}'],
        [1, undefined, '{"b":"ü"}'],
        [2, undefined, '{"id":null}'],
      ],
    );
    assert.equal(scan('{"a":1}')!.length, 1);
  });

  it('leaves to parseEvents every body it does not take as it is', () => {
    for (const body of [
      '',
      '[]',
      '{}',
      '[{}]',
      '[1]',
      '"x"',
      '[{"a":1},2]',
      '{"id":1}',
      '{"id":""}',
      `{"id":"${'x'.repeat(257)}"}`,
      '{"id":"é"}',
      '{"id":"a\\"b"}',
      '{"i\\u0064":"x"}',
      '{"_received_at":"x"}',
      '{"_client_ip":"x"}',
      '{"id":"x","a":1,"id":"y"}',
      '{"a":{"b":{"c":1}}}',
      '{"a":1}x',
      '{"a":01}',
      '{"a":1.}',
      '{"a":-}',
      '{"a":+1}',
      '{"a":.5}',
      '{"a":1e}',
      '{"a":"\\x"}',
      '{"a":"\\u12g4"}',
      '{"a":"\t"}',
      '{"a":tru}',
      '{"a":NaN}',
      '{"a":[1,]}',
      '{"a":1,}',
      '{a:1}',
      "{'a':1}",
      '[{"a":1}',
      '{"a":1',
      '\ufeff{"a":1}',
    ]) {
      assert.equal(scan(body, 2), undefined, body);
    }
    assert.equal(scan('[{"a":1},{"a":2}]', 64, 1), undefined, 'more than maxEvents');
    assert.equal(scanEvents(Buffer.from('{"ïd":"x"}'), 10, 64, 'ïd'), undefined, 'an id field outside ASCII');
    assert.equal(scanEvents(Buffer.from('{"event_id":"x"}'), 10, 64, 'event_id')![0]!.id, 'x');
    assert.ok(scan('{"a":{"b":1}}', 2), 'within the depth');
  });

  it('never takes a body JSON.parse refuses, nor an event deeper than the limit (random bodies)', () => {
    let seed = 42;
    const random = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    const atoms = [
      '1',
      '-0',
      '0.5',
      '1e5',
      '-2.5E-3',
      'true',
      'false',
      'null',
      '"s"',
      '"\\n"',
      '"\\u0041"',
      '"é"',
    ];
    const value = (depth: number): string => {
      const kind = random(depth > 3 ? 1 : 4);
      if (kind === 0) return atoms[random(atoms.length)]!;
      if (kind === 1) return `[${Array.from({ length: random(3) }, () => value(depth + 1)).join(',')}]`;
      return `{${Array.from({ length: random(3) }, (_, i) => `"${random(4) ? `k${i}` : 'id'}":${value(depth + 1)}`).join(',')}}`;
    };
    const junk = ' \t\n\r{}[]:,"\\0123456789.eE+-tfnulx\u0001';
    let taken = 0;
    for (let n = 0; n < 20_000; n++) {
      let body = random(2)
        ? `[${Array.from({ length: 1 + random(3) }, () => `{"id":"e${n}","v":${value(2)}}`).join(',')}]`
        : `{"v":${value(2)}}`;
      // Mutations: a character replaced, inserted or removed.
      for (let m = random(3); m > 0; m--) {
        const i = random(body.length);
        const op = random(3);
        const c = junk[random(junk.length)]!;
        body =
          op === 0
            ? body.slice(0, i) + c + body.slice(i + 1)
            : op === 1
              ? body.slice(0, i) + c + body.slice(i)
              : body.slice(0, i) + body.slice(i + 1);
      }
      const maxDepth = 1 + random(5);
      const items = scan(body, maxDepth);
      if (!items) continue;
      taken++;
      const parsed = parseEvents(body, 'json', 1000, Buffer.from(body));
      assert.equal(items.length, parsed.length, body);
      for (let i = 0; i < items.length; i++) {
        const value = parsed[i]!.value as Record<string, unknown>;
        assert.ok(value !== null && typeof value === 'object' && !Array.isArray(value), body);
        assert.ok(membersWithin(value, maxDepth) >= 0, body);
        assert.equal(items[i]!.id, (value.id ?? undefined) as string | undefined, body);
        assert.deepEqual(JSON.parse(Buffer.from(items[i]!.source!).toString()), value, body);
      }
    }
    assert.ok(taken > 5000, `${taken} bodies taken`);
  });
});
