/** `tributary dlq list | show | replay`: inspect a pipeline's rejected records, and send them through again. */
import type { Command } from 'commander';
import { parseTableIdentifier } from '../../catalog/identifier.ts';
import { dlqTableOf, openProjectLog, pipelineNamed } from '../../components.ts';
import { HEADER_REPLAY_FOR } from '../../core/pipeline/runner.ts';
import type { Project } from '../../core/project.ts';
import { TributaryError } from '../../errors.ts';
import { deleteWhere } from '../../iceberg/operations/write.ts';
import type { Log, StoredRecord } from '../../log/log.ts';
import { parseJsonExact, stringifyExact } from '../../core/json.ts';
import { QueryEngine } from '../../query/query-engine.ts';
import { HEADER_IDEMPOTENCY_KEY, HEADER_IDEMPOTENCY_SCOPE } from '../../server/dedupe.ts';
import { streamDlqTopic, streamTopic } from '../../server/streams.ts';
import { CHUNK_HEADER, POSITION_HEADER } from '../../sources/postgres-cdc/state.ts';
import type { CliContext } from '../context.ts';
import { wholeNumber } from '../options.ts';
import { formatTable } from '../output.ts';
import { withCatalog } from '../project-catalog.ts';

const sqlString = (text: string) => `'${text.replace(/'/g, "''")}'`;

/**
 * Headers of a rejected record that its replay does not carry: they say where it was first appended, not
 * what it is. The CDC source resumes after the position its topic's last record carries (an old one would
 * have it write changes again), and an Idempotency-Key names the HTTP request that appended the record.
 */
const NOT_REPLAYED = new Set([
  POSITION_HEADER,
  CHUNK_HEADER,
  HEADER_IDEMPOTENCY_KEY,
  HEADER_IDEMPOTENCY_SCOPE,
]);

/**
 * The HTTP stream `name`, when there is one and no pipeline of that name: its invalid events
 * (`on_invalid: dlq`) are in a log topic, not in a DLQ table.
 */
function httpStream(project: Project, name: string) {
  const config = project.platform.streams?.[name];
  if (!config || project.pipelines.has(name)) return undefined;
  const topic = streamTopic(name, config);
  // What the pipelines reading the stream rejected is in their DLQs.
  const readers = [...project.pipelines].filter(([, p]) => p.config.source.topic === topic).map(([n]) => n);
  const pipelines = readers.length
    ? `; the DLQs of the pipelines reading ${topic}: tributary dlq list ${readers.join(' | ')}`
    : '';
  if (config.on_invalid !== 'dlq')
    throw new TributaryError(
      'USAGE',
      `stream ${name} refuses invalid events (on_invalid: reject): it has no DLQ`,
      { hint: `with on_invalid: dlq it keeps them in topic ${streamDlqTopic(name, config)}${pipelines}` },
    );
  return { name, config, dlqTopic: streamDlqTopic(name, config), pipelines };
}

/** A stream's DLQ entry as the server wrote it (ingest.ts `#dlqRecord`). */
interface StreamDlqEntry {
  readonly id?: string;
  readonly error?: string;
  readonly payload?: string | null;
  readonly received_at?: string;
}

const decoder = new TextDecoder();

function streamDlqEntry(record: StoredRecord): StreamDlqEntry {
  try {
    const value = JSON.parse(decoder.decode(record.value)) as StreamDlqEntry | null;
    return value !== null && typeof value === 'object' ? value : {};
  } catch {
    return {};
  }
}

/** The newest `limit` records of a topic, newest first (by time, then position). */
async function newestRecords(log: Log, topic: string, limit: number): Promise<StoredRecord[]> {
  const records: StoredRecord[] = [];
  for (const { partition, start, end } of await log.offsets(topic)) {
    for (let at = Math.max(start, end - limit); at < end;) {
      const read = await log.read(topic, partition, at, { maxRecords: Math.min(1000, end - at) });
      if (read.length === 0) break;
      records.push(...read);
      at = read.at(-1)!.offset + 1;
    }
  }
  return records
    .sort((a, b) => b.timestamp - a.timestamp || a.partition - b.partition || b.offset - a.offset)
    .slice(0, limit);
}

/**
 * An event of the stream's DLQ as it can be sent to the stream again: the payload the client sent, with
 * the id the server gave it put in the stream's id field when the event had none — so that sending it
 * twice stores it once (within the stream's dedupe_window). A payload that is not a JSON object is given
 * as it was.
 */
function payloadToResend(entry: StreamDlqEntry, idField: string): string {
  const payload = entry.payload ?? 'null';
  try {
    const value = parseJsonExact(payload);
    if (value === null || typeof value !== 'object' || Array.isArray(value) || entry.id === undefined)
      return payload;
    const event = value as Record<string, unknown>;
    return event[idField] === undefined ? stringifyExact({ ...event, [idField]: entry.id }) : payload;
  } catch {
    return payload;
  }
}

/** A DLQ row's source position as one text, in SQL and here alike ('' for a row without one). */
const POSITION_SQL = `coalesce(topic || ':' || "partition" || ':' || "offset", '')`;

function positionOf(row: Record<string, unknown>): string {
  const { topic, partition, offset } = row;
  // As the query answers them: the topic a string, the partition a number, the offset (BIGINT) a string.
  const text = (value: unknown) =>
    typeof value === 'string' || typeof value === 'number' ? String(value) : undefined;
  const parts = [text(topic), text(partition), text(offset)];
  return parts.includes(undefined) ? '' : parts.join(':');
}

/**
 * The headers of the records the DLQ rows were rejected at (their topic, partition and offset), or none
 * where the log no longer holds the record (retention removed it). Reads the log in runs: rows mostly
 * come in offset order.
 */
async function originalHeaders(
  log: Log,
  rows: readonly Record<string, unknown>[],
): Promise<Readonly<Record<string, string>>[]> {
  const topics = new Map<string, boolean>();
  let run = { of: '', from: 0, to: 0, records: new Map<number, StoredRecord>() };
  const headers: Readonly<Record<string, string>>[] = [];
  for (const { topic, partition, offset } of rows) {
    if (typeof topic !== 'string' || partition == null || offset == null) {
      headers.push({});
      continue;
    }
    const [p, at] = [Number(partition), Number(offset)];
    const of = `${topic}\0${p}`;
    if (of !== run.of || at < run.from || at >= run.to) {
      if (!topics.has(topic)) topics.set(topic, (await log.describeTopic(topic)) !== undefined);
      // Up to the last of the next rows of this partition within 1,000 offsets (rows come by partition and
      // offset): scattered rejections read one record each, not a thousand.
      let last = at;
      for (let next = headers.length + 1; next < rows.length; next++) {
        const row = rows[next]!;
        const ahead = Number(row.offset);
        if (row.topic !== topic || Number(row.partition) !== p || !(ahead < at + 1000)) break;
        last = Math.max(last, ahead);
      }
      const read = topics.get(topic) ? await log.read(topic, p, at, { maxRecords: last - at + 1 }) : [];
      run = {
        of,
        from: at,
        to: (read.at(-1)?.offset ?? at) + 1,
        records: new Map(read.map((r) => [r.offset, r])),
      };
    }
    headers.push(run.records.get(at)?.headers ?? {});
  }
  return headers;
}

export function registerDlq(program: Command, context: () => CliContext): void {
  const dlq = program
    .command('dlq')
    .description("A pipeline's dead-letter queue: list, show and replay rejected records.");

  dlq
    .command('list')
    .description(
      "List the rejected records of a pipeline, or an HTTP stream's invalid events, newest first, with the reason.",
    )
    .argument('<pipeline>', 'the pipeline, or a stream with on_invalid: dlq')
    .option('--limit <n>', 'at most this many', wholeNumber('--limit'), 50)
    .option('--json', 'print JSON')
    .option(
      '--payloads',
      'a stream only: print the events themselves as NDJSON, in the order received, each with the id it was given — to fix and send again',
    )
    .action(async (name: string, options: { limit: number; json?: boolean; payloads?: boolean }) => {
      const project = context().loadProject();
      const limit = options.limit;
      const stream = httpStream(project, name);
      if (stream) {
        const log = await openProjectLog(project);
        try {
          const records = (await log.describeTopic(stream.dlqTopic))
            ? await newestRecords(log, stream.dlqTopic, limit)
            : [];
          const entries = records.map(streamDlqEntry);
          if (options.payloads) {
            for (const entry of entries.reverse())
              console.log(payloadToResend(entry, stream.config.id_field));
          } else if (options.json)
            console.log(
              JSON.stringify(
                records.map((r, i) => ({ partition: r.partition, offset: r.offset, ...entries[i] })),
                null,
                2,
              ),
            );
          else if (records.length === 0) console.log(`No invalid events in ${stream.dlqTopic}.`);
          else
            console.log(
              formatTable(
                ['position', 'id', 'error', 'received at'],
                records.map((r, i) => [
                  `${r.partition}:${r.offset}`,
                  String(entries[i]!.id ?? ''),
                  String(entries[i]!.error ?? '').slice(0, 100),
                  String(entries[i]!.received_at ?? new Date(r.timestamp).toISOString()),
                ]),
              ),
            );
        } finally {
          await log.close();
        }
        return;
      }
      if (options.payloads)
        throw new TributaryError('USAGE', '--payloads lists the events of an HTTP stream', {
          hint: `a pipeline's rejected records are sent again with tributary dlq replay ${name}`,
        });
      pipelineNamed(project, name);
      const table = dlqTableOf(project, name);
      await withCatalog(project, async (catalog, engine) => {
        if (!(await catalog.tableExists(parseTableIdentifier(table)))) {
          console.log(options.json ? '[]' : `No rejected records: ${table} does not exist yet.`);
          return;
        }
        const result = await new QueryEngine(catalog, engine).query(
          `select "partition", "offset", stage, error, failed_at from ${table} where pipeline = ${sqlString(name)} order by failed_at desc, "partition", "offset" limit ${limit}`,
        );
        if (options.json) console.log(JSON.stringify(result.rows, null, 2));
        else if (result.rows.length === 0) console.log(`No rejected records for ${name}.`);
        else
          console.log(
            formatTable(
              ['position', 'stage', 'error', 'failed at'],
              result.rows.map((r) => [
                `${String(r.partition)}:${String(r.offset)}`,
                String(r.stage),
                String(r.error).slice(0, 100),
                String(r.failed_at),
              ]),
            ),
          );
      });
    });

  dlq
    .command('show')
    .description('Show one rejected record (or invalid event) in full: reason, stage, position and payload.')
    .argument('<pipeline>', 'the pipeline, or a stream with on_invalid: dlq')
    .argument('<position>', 'partition:offset, as `dlq list` prints it')
    .action(async (name: string, position: string) => {
      const match = /^(\d+):(\d+)$/.exec(position);
      if (!match)
        throw new TributaryError('USAGE', `"${position}" is not a position`, {
          hint: 'write partition:offset, e.g. 2:1041',
        });
      const project = context().loadProject();
      const stream = httpStream(project, name);
      if (stream) {
        const log = await openProjectLog(project);
        try {
          const [partition, offset] = [Number(match[1]), Number(match[2])];
          const info = await log.describeTopic(stream.dlqTopic);
          const [record] =
            info && partition < info.partitions
              ? await log.read(stream.dlqTopic, partition, offset, { maxRecords: 1 })
              : [];
          if (record?.offset !== offset)
            throw new TributaryError('USAGE', `no invalid event of ${name} at ${position}`, {
              hint: `see \`tributary dlq list ${name}\``,
            });
          console.log(
            JSON.stringify(
              { partition, offset, ...streamDlqEntry(record), headers: record.headers },
              null,
              2,
            ),
          );
        } finally {
          await log.close();
        }
        return;
      }
      pipelineNamed(project, name);
      await withCatalog(project, async (catalog, engine) => {
        const result = await new QueryEngine(catalog, engine).query(
          `select * from ${dlqTableOf(project, name)} where pipeline = ${sqlString(name)} and "partition" = ${match[1]} and "offset" = ${match[2]} order by failed_at desc limit 1`,
        );
        const row = result.rows[0];
        if (!row)
          throw new TributaryError('USAGE', `no rejected record of ${name} at ${position}`, {
            hint: 'see `tributary dlq list`',
          });
        console.log(JSON.stringify(row, null, 2));
      });
    });

  dlq
    .command('replay')
    .description(
      'Send rejected records back through the pipeline (after fixing its schema or transforms), and remove them from the DLQ. Other pipelines reading its topic skip them.',
    )
    .argument('<pipeline>', 'the pipeline')
    .option('--where <sql>', 'only the DLQ rows matching this SQL condition, e.g. "stage = \'validate\'"')
    .action(async (name: string, options: { where?: string }) => {
      const project = context().loadProject();
      const stream = httpStream(project, name);
      if (stream)
        throw new TributaryError(
          'USAGE',
          `stream ${name}'s invalid events are sent to it again over HTTP, where they are checked and deduplicated`,
          {
            hint: `tributary dlq list ${name} --payloads --limit <n> > events.ndjson, fix them, then POST the file to /v1/streams/${name}/events (content-type application/x-ndjson): each keeps its id, so sending it twice stores it once${stream.pipelines}`,
          },
        );
      const pipeline = pipelineNamed(project, name);
      const table = dlqTableOf(project, name);
      const condition = `pipeline = ${sqlString(name)}${options.where ? ` and (${options.where})` : ''}`;
      const log = await openProjectLog(project);
      try {
        await withCatalog(project, async (catalog, engine) => {
          if (!(await catalog.tableExists(parseTableIdentifier(table)))) {
            console.log(`Nothing to replay: ${table} does not exist yet.`);
            return;
          }
          const rows = (
            await new QueryEngine(catalog, engine).query(
              `select key, payload, topic, "partition", "offset" from ${table} where ${condition} order by "partition", "offset"`,
            )
          ).rows;
          if (rows.length === 0) {
            console.log('Nothing to replay.');
            return;
          }
          const encoder = new TextEncoder();
          const topic = pipeline.config.source.topic;
          const headers = await originalHeaders(log, rows);
          for (let i = 0; i < rows.length; i += 1000) {
            await log.append(
              topic,
              rows.slice(i, i + 1000).map((r, j) => ({
                key: typeof r.key === 'string' ? r.key : null,
                value: encoder.encode(
                  typeof r.payload === 'string' ? r.payload : JSON.stringify(r.payload ?? null),
                ),
                // Other pipelines read this topic too: the header has them skip what is this one's alone.
                headers: {
                  ...Object.fromEntries(
                    Object.entries(headers[i + j]!).filter(([h]) => !NOT_REPLAYED.has(h)),
                  ),
                  [HEADER_REPLAY_FOR]: name,
                },
              })),
            );
          }
          // Appended first, removed second: a crash in between replays these records twice, never loses
          // them. Only the rows replayed are removed, by their positions: the pipeline may have rejected
          // more that match the condition meanwhile.
          await engine.connection.run(
            'create or replace temp table dlq_replayed (position varchar primary key)',
          );
          const positions = [...new Set(rows.map(positionOf))];
          for (let i = 0; i < positions.length; i += 1000)
            await engine.connection.run(
              `insert into dlq_replayed values ${positions
                .slice(i, i + 1000)
                .map((position) => `(${sqlString(position)})`)
                .join(', ')}`,
            );
          await deleteWhere(
            await catalog.loadTable(parseTableIdentifier(table)),
            engine,
            `(${condition}) and ${POSITION_SQL} in (select position from dlq_replayed)`,
          );
          console.log(
            `Replayed ${rows.length} record(s) into ${topic} for ${name}; removed them from ${table}.`,
          );
        });
      } finally {
        await log.close();
      }
    });
}
