/**
 * The stdout sink: one JSON line per record on standard output (logs go to standard error, so the two do
 * not mix). At-least-once: the positions are committed to the log's consumer-group offsets (group
 * `<pipeline>/<sink>`) once the batch's lines were handed to the stream, and read back by `open()`; a crash
 * in between prints the batch again.
 */
import type { Writable } from 'node:stream';
import type { Logger } from '../../core/logger.ts';
import type { PipelineRecord, Positions, Sink, SinkBatch, SinkResult } from '../../core/pipeline/model.ts';
import { TributaryError } from '../../errors.ts';
import type { Log } from '../../log/log.ts';
import type { StdoutSinkConfig } from './config.ts';

export interface StdoutSinkOptions {
  readonly config: StdoutSinkConfig;
  readonly pipeline: string;
  /** The topic the pipeline reads: the sink's positions are consumer-group offsets of it. */
  readonly sourceTopic: string;
  readonly log: Pick<Log, 'committedOffsets' | 'commitOffsets'>;
  readonly logger: Logger;
  /** Where the lines go; standard output by default. */
  readonly output?: Writable;
}

export class StdoutSink implements Sink {
  readonly name: string;
  /** The consumer group holding this sink's positions. */
  readonly group: string;
  readonly #config: StdoutSinkConfig;
  readonly #topic: string;
  readonly #log: StdoutSinkOptions['log'];
  readonly #output: Writable;
  readonly #positions = new Map<number, number>();

  constructor(options: StdoutSinkOptions) {
    this.#config = options.config;
    this.name = options.config.name ?? 'stdout';
    this.group = `${options.pipeline}/${this.name}`;
    this.#topic = options.sourceTopic;
    this.#log = options.log;
    this.#output = options.output ?? process.stdout;
  }

  async open(): Promise<Positions> {
    const committed = await this.#log.committedOffsets(this.group, this.#topic);
    this.#positions.clear();
    for (const [partition, offset] of committed) this.#positions.set(partition, offset);
    return new Map(this.#positions);
  }

  async write(batch: SinkBatch): Promise<SinkResult> {
    const records = batch.records.filter((r) => r.offset >= (this.#positions.get(r.partition) ?? 0));
    if (records.length > 0) await this.#print(records.map((r) => this.#line(r)).join(''));
    const positions = new Map(this.#positions);
    for (const [partition, offset] of batch.positions) {
      positions.set(partition, Math.max(offset, positions.get(partition) ?? 0));
    }
    await this.#log.commitOffsets(this.group, this.#topic, positions);
    for (const [partition, offset] of positions) this.#positions.set(partition, offset);
    return {};
  }

  async close(): Promise<void> {}

  #line(record: PipelineRecord): string {
    if (!this.#config.metadata) return `${JSON.stringify(record.value)}\n`;
    const { partition, offset, key, timestamp, headers, value } = record;
    return `${JSON.stringify({ partition, offset, key, timestamp, headers, value })}\n`;
  }

  /** Writes the text and waits until the stream took it (and for room, when it is full). */
  async #print(text: string): Promise<void> {
    try {
      await new Promise<void>((resolve, reject) => {
        this.#output.write(text, (error) => (error ? reject(error) : resolve()));
      });
    } catch (error) {
      throw new TributaryError(
        'STORAGE_IO',
        `Sink ${this.name} cannot write to standard output: ${(error as Error).message}`,
        {
          context: { sink: this.name },
          cause: error,
          retryable: false,
          hint: 'Standard output was closed (a pipe whose reader ended?); restart with it open.',
        },
      );
    }
  }
}
