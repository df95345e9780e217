/** Option parsers and option groups that several commands share. */
import type { Command } from 'commander';
import { TributaryError } from '../errors.ts';

/** A TCP port from the command line (0: any free port). */
export function port(text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0 || value > 65_535)
    throw new TributaryError('USAGE', `${text} is not a port number`, {
      hint: 'use a whole number from 0 to 65535 (0 picks a free one)',
    });
  return value;
}

/** A count from the command line: a whole number, at least `min`. */
export function wholeNumber(option: string, min = 1): (text: string) => number {
  return (text) => {
    const value = Number(text);
    if (text.trim() === '' || !Number.isSafeInteger(value) || value < min)
      throw new TributaryError('USAGE', `${option} ${text}: not a whole number ≥ ${min}`, {
        hint: `write ${option} ${Math.max(min, 1) * 10}, say`,
      });
    return value;
  };
}

/** `--health-port`/`--health-host` as runPipelines takes them. */
export function healthOption(options: {
  healthPort?: number;
  healthHost: string;
}): { host: string; port: number } | undefined {
  return options.healthPort === undefined
    ? undefined
    : { host: options.healthHost, port: options.healthPort };
}

/** Adds `--health-port` and `--health-host` (probe-server.ts) to a command that has no HTTP server. */
export function withHealthOptions(command: Command, portHelp: string): Command {
  return command
    .option('--health-port <port>', portHelp, port)
    .option('--health-host <host>', 'the address for --health-port', '127.0.0.1');
}
