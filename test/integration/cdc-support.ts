/**
 * Shared by the CDC integration tests: a private PostgreSQL (the harness's definition, in a directory of
 * the test's own, so restarting it disturbs no other suite), a TCP proxy in front of it (a restart moves
 * PostgreSQL to another port; the proxy keeps the source's address, and can cut every connection), a
 * project on disk, and the CLI run in the foreground or the background.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect as tcpConnect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { CLI, tributary } from '../cli.ts';
import { requireServices, ServiceUnavailable, type RunResult } from '../services/harness.ts';
import { postgres, type PostgresInfo } from '../services/postgres.ts';

/** Why the suite cannot run here (PostgreSQL is not installable), or undefined. */
export async function postgresSkipReason(): Promise<string | false> {
  try {
    await postgres.install();
    return false;
  } catch (error) {
    if (error instanceof ServiceUnavailable && !requireServices())
      return `${error.message} (set TRIBUTARY_REQUIRE_SERVICES=1 to fail instead)`;
    throw error;
  }
}

/** A forwarding proxy: clients connect to `port`; `target` can change; `cut()` drops every connection. */
export class Proxy {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  target: number;
  port = 0;

  constructor(target: number) {
    this.target = target;
    this.#server = createServer((client) => {
      const upstream = tcpConnect(this.target, '127.0.0.1');
      this.#sockets.add(client).add(upstream);
      const close = () => {
        client.destroy();
        upstream.destroy();
        this.#sockets.delete(client);
        this.#sockets.delete(upstream);
      };
      client.on('error', close).on('close', close);
      upstream.on('error', close).on('close', close);
      client.pipe(upstream);
      upstream.pipe(client);
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    const address = this.#server.address();
    this.port = typeof address === 'object' && address ? address.port : 0;
    return this.port;
  }

  cut(): void {
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** A PostgreSQL server of the test's own, behind a proxy. */
export class PrivatePostgres {
  readonly dir: string;
  info!: PostgresInfo;
  readonly proxy: Proxy;

  private constructor(dir: string, proxy: Proxy) {
    this.dir = dir;
    this.proxy = proxy;
  }

  static async start(): Promise<PrivatePostgres> {
    const dir = mkdtempSync(path.join(tmpdir(), 'tributary-cdc-pg-'));
    chmodSync(dir, 0o755); // the server runs as the postgres user when we are root
    const stateDir = path.join(dir, 'state');
    mkdirSync(stateDir);
    const info = await postgres.start(stateDir);
    const proxy = new Proxy(info.port);
    await proxy.listen();
    const server = new PrivatePostgres(dir, proxy);
    server.info = info;
    return server;
  }

  /** Connection URL straight to the server (tests' own connections). */
  get url(): string {
    return this.info.url;
  }

  /** Stops and starts the server (on a new port; the proxy follows). */
  async restart(): Promise<void> {
    await postgres.stop(this.info, path.join(this.dir, 'state'));
    this.proxy.cut();
    this.info = await postgres.start(path.join(this.dir, 'state'));
    this.proxy.target = this.info.port;
  }

  async client(): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: this.url });
    client.on('error', () => undefined);
    await client.connect();
    return client;
  }

  async stop(): Promise<void> {
    await this.proxy.close();
    await postgres.stop(this.info, path.join(this.dir, 'state')).catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const projects: string[] = [];

/** Removes the project directories `makeProject` made (call in `after`). */
export function removeProjects(): void {
  for (const root of projects.splice(0)) rmSync(root, { recursive: true, force: true });
}

/** A project directory with tributary.yaml; `write` adds files. */
export function makeProject(prefix: string): { root: string; write: (file: string, text: string) => void } {
  const root = mkdtempSync(path.join(tmpdir(), prefix));
  projects.push(root);
  writeFileSync(
    path.join(root, 'tributary.yaml'),
    'project: cdc\nlog:\n  backend: embedded\n  durability: os\n  partitions: 3\nlogging:\n  level: info\n  format: json\n',
  );
  return {
    root,
    write(file, text) {
      mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
      writeFileSync(path.join(root, file), text);
    },
  };
}

export function sourceYaml(port: number, tables: readonly string[], extra = ''): string {
  return [
    'type: postgres_cdc',
    'host: 127.0.0.1',
    `port: ${port}`,
    'database: tributary',
    'user: tributary',
    'password: ${PG_PASSWORD}',
    'sslmode: disable',
    `tables: [${tables.join(', ')}]`,
    'heartbeat_interval: 1s',
    'acknowledge: {interval: 200ms}',
    extra,
  ].join('\n');
}

export const ENV = { PG_PASSWORD: 'tributary' };

export async function cli(root: string, args: readonly string[]): Promise<RunResult> {
  return tributary(args, { cwd: root, env: ENV });
}

/** A CLI process in the background, its output collected. */
export class Background {
  /** Every process started, so that a failed test leaves none behind (`killAll`). */
  static readonly running = new Set<Background>();

  static killAll(): void {
    for (const bg of Background.running) bg.child.kill('SIGKILL');
  }

  readonly child: ChildProcess;
  output = '';
  readonly exited: Promise<number | null>;

  constructor(root: string, args: readonly string[]) {
    this.child = spawn(process.execPath, [CLI, ...args], {
      cwd: root,
      env: { ...process.env, ...ENV, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // Decoded as a stream: a character split between two chunks of the pipe is not two U+FFFD.
    this.child.stdout!.setEncoding('utf8');
    this.child.stderr!.setEncoding('utf8');
    this.child.stdout!.on('data', (chunk: string) => (this.output += chunk));
    this.child.stderr!.on('data', (chunk: string) => (this.output += chunk));
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code) => {
        Background.running.delete(this);
        resolve(code);
      }),
    );
    Background.running.add(this);
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<number | null> {
    this.child.kill(signal);
    return this.exited;
  }
}

/** Rows of `tributary query --format json`. */
export async function query(root: string, sql: string): Promise<Array<Record<string, unknown>>> {
  const result = await cli(root, ['query', sql, '--format', 'json']);
  if (result.code !== 0) throw new Error(`query failed: ${sql}\n${result.stderr}`);
  return JSON.parse(result.stdout) as Array<Record<string, unknown>>;
}

export async function waitFor<T>(
  what: string | (() => string),
  probe: () => Promise<T | undefined | false>,
  timeoutMs = 60_000,
  everyMs = 250,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${typeof what === 'string' ? what : what()}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/** `tributary cdc status --json`. */
export async function cdcStatus(
  root: string,
  source: string,
): Promise<{
  snapshotted: string[];
  snapshots: Array<{ table: string; rows: number; chunks: number }>;
  records: number;
  confirmedLsn: string | null;
  activePid: number | null;
}> {
  const result = await cli(root, ['cdc', 'status', source, '--json']);
  if (result.code !== 0) throw new Error(`cdc status failed:\n${result.stderr}`);
  return JSON.parse(result.stdout) as never;
}

/** LSN text to a bigint, for comparisons. */
export function lsn(text: string): bigint {
  const [hi, lo] = text.split('/');
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}
