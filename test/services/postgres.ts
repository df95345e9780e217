/**
 * PostgreSQL from Debian's packages, in a data directory of its own, on loopback on a private port, with
 * `wal_level=logical` for change data capture. Installed with apt-get when the server is missing and this
 * process may (root); as root the server runs as the `postgres` system user, which the package creates.
 */
import { existsSync, mkdirSync, readdirSync, writeFileSync, chownSync, statSync } from 'node:fs';
import { userInfo } from 'node:os';
import path from 'node:path';
import {
  commandExists,
  freePort,
  run,
  runChecked,
  ServiceUnavailable,
  type ServiceDefinition,
} from './harness.ts';

export interface PostgresInfo {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly database: string;
  /** postgresql://user:password@host:port/database */
  readonly url: string;
  readonly dataDir: string;
  readonly binDir: string;
}

const USER = 'tributary';
const PASSWORD = 'tributary';
const DATABASE = 'tributary';

function findBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(path.join(root, v, 'bin', 'postgres')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? path.join(root, versions[0], 'bin') : undefined;
}

const isRoot = userInfo().uid === 0;

/** Runs a PostgreSQL program as the server's owner: ourselves, or `postgres` when we are root. */
async function asOwner(binDir: string, program: string, args: readonly string[]): Promise<string> {
  const binary = path.join(binDir, program);
  return isRoot ? runChecked('runuser', ['-u', 'postgres', '--', binary, ...args]) : runChecked(binary, args);
}

export const postgres: ServiceDefinition<PostgresInfo> = {
  name: 'postgres',

  async install() {
    if (findBinDir()) return;
    if (!isRoot || !commandExists('apt-get')) {
      throw new ServiceUnavailable(
        'postgres',
        'the PostgreSQL server is not installed: install the Debian package "postgresql" (apt-get install postgresql)',
      );
    }
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    await runChecked('apt-get', ['update', '-q'], { env });
    await runChecked('apt-get', ['install', '-y', '-q', '--no-install-recommends', 'postgresql'], { env });
    if (!findBinDir())
      throw new ServiceUnavailable(
        'postgres',
        'apt-get install postgresql did not provide /usr/lib/postgresql/*/bin/postgres',
      );
  },

  async start(stateDir) {
    const binDir = findBinDir();
    if (!binDir) throw new ServiceUnavailable('postgres', 'the PostgreSQL server is not installed');
    const dataDir = path.join(stateDir, 'data');
    const socketDir = path.join(stateDir, 'socket');
    const logFile = path.join(stateDir, 'postgres.log');
    const port = await freePort();
    mkdirSync(socketDir, { recursive: true });
    if (isRoot) {
      const { uid, gid } = statSync('/var/lib/postgresql');
      chownSync(stateDir, uid, gid);
      chownSync(socketDir, uid, gid);
      writeFileSync(logFile, '');
      chownSync(logFile, uid, gid);
    }
    if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
      await asOwner(binDir, 'initdb', [
        '-D',
        dataDir,
        '-U',
        'postgres',
        '--auth=trust',
        '--encoding=UTF8',
        '--locale=C.UTF-8',
        '-N',
      ]);
      // Loopback only; trust for replication too, the harness's server is for tests.
      writeFileSync(
        path.join(dataDir, 'pg_hba.conf'),
        [
          'local all all trust',
          'host all all 127.0.0.1/32 trust',
          'local replication all trust',
          'host replication all 127.0.0.1/32 trust',
          '',
        ].join('\n'),
      );
    }
    const options = [
      `-c port=${port}`,
      `-c listen_addresses=127.0.0.1`,
      `-c unix_socket_directories=${socketDir}`,
      '-c wal_level=logical',
      '-c max_replication_slots=32',
      '-c max_wal_senders=32',
      '-c fsync=off',
      '-c full_page_writes=off',
    ].join(' ');
    await asOwner(binDir, 'pg_ctl', ['-D', dataDir, '-l', logFile, '-o', options, '-w', '-t', '60', 'start']);
    const psql = (sql: string) =>
      runChecked(path.join(binDir, 'psql'), [
        '-h',
        '127.0.0.1',
        '-p',
        String(port),
        '-U',
        'postgres',
        '-d',
        'postgres',
        '-v',
        'ON_ERROR_STOP=1',
        '-qAtc',
        sql,
      ]);
    const exists = (await psql(`select 1 from pg_roles where rolname = '${USER}'`)).trim() === '1';
    if (!exists) {
      await psql(`create role ${USER} login superuser replication password '${PASSWORD}'`);
      await psql(`create database ${DATABASE} owner ${USER}`);
    }
    return {
      host: '127.0.0.1',
      port,
      user: USER,
      password: PASSWORD,
      database: DATABASE,
      url: `postgresql://${USER}:${PASSWORD}@127.0.0.1:${port}/${DATABASE}`,
      dataDir,
      binDir,
    };
  },

  async isRunning(info) {
    if (!existsSync(path.join(info.binDir, 'pg_isready'))) return false;
    const result = await run(path.join(info.binDir, 'pg_isready'), [
      '-h',
      info.host,
      '-p',
      String(info.port),
      '-t',
      '2',
    ]);
    return result.code === 0;
  },

  async stop(info) {
    await asOwner(info.binDir, 'pg_ctl', ['-D', info.dataDir, '-m', 'fast', '-w', 'stop']);
  },
};
