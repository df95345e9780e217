/** `tributary topics …`: the log's topics — list them, append records to one, read from one. */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { openProjectLog } from '../../components.ts';
import { parseJsonExact } from '../../core/json.ts';
import { TributaryError } from '../../errors.ts';
import type { LogRecord } from '../../log/log.ts';
import type { CliContext } from '../context.ts';
import { formatTable } from '../output.ts';

export function registerTopics(program: Command, context: () => CliContext): void {
  const topics = program.command('topics').description('The topics of the log: list, produce, read.');

  topics
    .command('list')
    .description('List topics with their partitions and record counts.')
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
          });
        }
        if (options.json) console.log(JSON.stringify(rows, null, 2));
        else
          console.log(
            formatTable(
              ['topic', 'partitions', 'records', 'appended'],
              rows.map((r) => [r.topic, String(r.partitions), String(r.records), String(r.end)]),
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
        await log.ensureTopic(topic, {
          partitions: (await log.describeTopic(topic))?.partitions ?? project.platform.log.partitions,
        });
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
    .description('Print records of a topic as JSON lines, from the oldest kept.')
    .argument('<topic>', 'the topic')
    .option('--limit <n>', 'at most this many records per partition', '20')
    .action(async (topic: string, options: { limit: string }) => {
      const log = await openProjectLog(context().loadProject());
      try {
        const info = await log.describeTopic(topic);
        if (!info)
          throw new TributaryError('USAGE', `topic ${topic} does not exist`, {
            hint: 'see `tributary topics list`',
          });
        const decoder = new TextDecoder();
        for (const { partition, start } of await log.offsets(topic)) {
          for (const record of await log.read(topic, partition, start, {
            maxRecords: Number(options.limit),
          })) {
            console.log(
              JSON.stringify({
                partition,
                offset: record.offset,
                key: record.key,
                timestamp: new Date(record.timestamp).toISOString(),
                value: decoder.decode(record.value),
              }),
            );
          }
        }
      } finally {
        await log.close();
      }
    });
}
