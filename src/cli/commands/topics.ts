/** `tributary topics …`: the log's topics — list them, append records to one, read from one. */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { openProjectLog } from '../../components.ts';
import { formatByteSize } from '../../core/config/units.ts';
import { parseJsonExact } from '../../core/json.ts';
import { TributaryError } from '../../errors.ts';
import type { LogRecord, StoredRecord } from '../../log/log.ts';
import { formatMs } from '../../query/models/config.ts';
import type { CliContext } from '../context.ts';
import { wholeNumber } from '../options.ts';
import { formatTable } from '../output.ts';

export function registerTopics(program: Command, context: () => CliContext): void {
  const topics = program.command('topics').description('The topics of the log: list, produce, read.');

  topics
    .command('list')
    .description('List topics with their partitions, record counts and retention.')
    .option('--json', 'print JSON')
    .action(async (options: { json?: boolean }) => {
      const log = await openProjectLog(context().loadProject());
      try {
        const rows = [];
        for (const topic of await log.listTopics()) {
          const offsets = await log.offsets(topic.name);
          rows.push({
            topic: topic.name,
            partitions: topic.partitions,
            records: offsets.reduce((n, o) => n + o.end - o.start, 0),
            end: offsets.reduce((n, o) => n + o.end, 0),
            ...(topic.retentionMs === undefined ? {} : { retentionMs: topic.retentionMs }),
            ...(topic.retentionBytes === undefined ? {} : { retentionBytes: topic.retentionBytes }),
          });
        }
        if (options.json) console.log(JSON.stringify(rows, null, 2));
        else
          console.log(
            formatTable(
              ['topic', 'partitions', 'records', 'appended', 'retention'],
              rows.map((r) => [
                r.topic,
                String(r.partitions),
                String(r.records),
                String(r.end),
                retentionText(r.retentionMs, r.retentionBytes),
              ]),
            ),
          );
      } finally {
        await log.close();
      }
    });

  topics
    .command('produce')
    .description('Append NDJSON records (one JSON object per line) from a file or standard input to a topic.')
    .argument('<topic>', 'the topic (created if absent)')
    .argument('[file]', 'NDJSON file (default: standard input)')
    .option('--key <field>', 'use this field of each record as its key (same key, same partition)')
    .action(async (topic: string, file: string | undefined, options: { key?: string }) => {
      const project = context().loadProject();
      const log = await openProjectLog(project);
      try {
        // Created when absent; an existing topic is left as it is (its retention is its stream's or source's).
        if (!(await log.describeTopic(topic)))
          await log.ensureTopic(topic, { partitions: project.platform.log.partitions });
        const input = createInterface({
          input: file ? createReadStream(file) : process.stdin,
          crlfDelay: Infinity,
        });
        const encoder = new TextEncoder();
        let batch: LogRecord[] = [];
        let count = 0;
        let line = 0;
        for await (const text of input) {
          line++;
          if (!text.trim()) continue;
          let key: string | null = null;
          if (options.key) {
            let parsed: unknown;
            try {
              parsed = parseJsonExact(text);
            } catch {
              throw new TributaryError(
                'INVALID_INPUT',
                `line ${line} is not JSON, so it has no field ${options.key}`,
                { hint: 'fix the line, or produce without --key' },
              );
            }
            const value = (parsed as Record<string, unknown> | null)?.[options.key];
            key =
              value === undefined || value === null
                ? null
                : typeof value === 'string'
                  ? value
                  : JSON.stringify(value);
          }
          batch.push({ key, value: encoder.encode(text) });
          if (batch.length === 1000) {
            await log.append(topic, batch);
            count += batch.length;
            batch = [];
          }
        }
        if (batch.length) await log.append(topic, batch);
        count += batch.length;
        console.log(`Appended ${count} record(s) to ${topic}.`);
      } finally {
        await log.close();
      }
    });

  topics
    .command('read')
    .description(
      'Print records of a topic as JSON lines (partition, offset, key, timestamp, headers, value), from the oldest kept, partition after partition.',
    )
    .argument('<topic>', 'the topic')
    .option('--partition <n>', 'only this partition', wholeNumber('--partition', 0))
    .option('--from <offset>', 'start at this offset (in each partition read)', wholeNumber('--from', 0))
    .option('--last <n>', 'start at the newest n records of each partition read', wholeNumber('--last', 0))
    .option(
      '--limit <n>',
      'at most this many records per partition (default: 20; none with --follow)',
      wholeNumber('--limit'),
    )
    .option('--follow', 'then keep printing records as they are appended, until Ctrl-C')
    .option('--values', 'print only each value, one a line (NDJSON, as `topics produce` takes it)')
    .action(
      async (
        topic: string,
        options: {
          partition?: number;
          from?: number;
          last?: number;
          limit?: number;
          follow?: boolean;
          values?: boolean;
        },
      ) => {
        if (options.from !== undefined && options.last !== undefined)
          throw new TributaryError('USAGE', '--from and --last both say where to start', {
            hint: 'give one of them',
          });
        const log = await openProjectLog(context().loadProject());
        const stopped = new AbortController();
        const stop = () => stopped.abort();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        try {
          const info = await log.describeTopic(topic);
          if (!info)
            throw new TributaryError('USAGE', `topic ${topic} does not exist`, {
              hint: 'see `tributary topics list`',
            });
          if (options.partition !== undefined && options.partition >= info.partitions)
            throw new TributaryError(
              'USAGE',
              `topic ${topic} has ${info.partitions} partition(s): there is no partition ${options.partition}`,
              { hint: `give --partition 0${info.partitions > 1 ? ` to ${info.partitions - 1}` : ''}` },
            );
          const decoder = new TextDecoder();
          const print = (record: StoredRecord) =>
            console.log(
              options.values
                ? decoder.decode(record.value)
                : JSON.stringify({
                    partition: record.partition,
                    offset: record.offset,
                    key: record.key,
                    timestamp: new Date(record.timestamp).toISOString(),
                    headers: record.headers,
                    value: decoder.decode(record.value),
                  }),
            );
          const limit = options.limit ?? (options.follow ? Infinity : 20);
          // Where each partition read goes on from, and how many records it may still print.
          const cursors = (await log.offsets(topic))
            .filter((o) => options.partition === undefined || o.partition === options.partition)
            .map((o) => ({
              partition: o.partition,
              next: Math.max(
                o.start,
                options.from ?? (options.last === undefined ? o.start : o.end - options.last),
              ),
              left: limit,
            }));
          const readFrom = async (cursor: (typeof cursors)[number], waitMs = 0) => {
            const records = await log.read(topic, cursor.partition, cursor.next, {
              maxRecords: Math.min(cursor.left, 1000),
              waitMs,
              signal: stopped.signal,
            });
            for (const record of records) print(record);
            if (records.length) cursor.next = records.at(-1)!.offset + 1;
            cursor.left -= records.length;
            return records.length;
          };
          // What is there now, partition after partition.
          for (const cursor of cursors)
            while (cursor.left > 0 && !stopped.signal.aborted && (await readFrom(cursor)));
          // Then what comes, from every partition, as it comes: one waits on the log, the others are polled.
          while (options.follow && !stopped.signal.aborted && cursors.some((c) => c.left > 0)) {
            let found = 0;
            for (const cursor of cursors) if (cursor.left > 0) found += await readFrom(cursor);
            if (found === 0 && cursors.length) {
              if (cursors.length === 1) await readFrom(cursors[0]!, 1000);
              else await sleep(200, undefined, { signal: stopped.signal }).catch(() => undefined);
            }
          }
        } catch (error) {
          if (!stopped.signal.aborted) throw error;
        } finally {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          await log.close();
        }
      },
    );
}

/** "forever", "7d", "10.0 GiB a partition", or both: what retention removes. */
function retentionText(ms: number | undefined, bytes: number | undefined): string {
  const limits = [
    ...(ms === undefined ? [] : [formatMs(ms)]),
    ...(bytes === undefined ? [] : [`${formatByteSize(bytes)} a partition`]),
  ];
  return limits.length ? limits.join(', ') : 'forever';
}
