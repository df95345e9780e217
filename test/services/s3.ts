/**
 * An S3 server for the storage tests: moto's server mode (PyPI `moto[server]`) in a Python virtual
 * environment cached in ~/.cache/tributary, on loopback on a private port, with one bucket and one IAM user.
 *
 * Two choices make it behave like S3 where the tests need it to:
 * - Requests are authenticated: after the start-up creates the user, its access key and the bucket, moto's
 *   IAM checks are switched on (`/moto-api/reset-auth`), so a wrong secret is refused with S3's own errors
 *   (SignatureDoesNotMatch, InvalidAccessKeyId) and the storage's messages for them can be tested.
 * - The server handles one request at a time (werkzeug with `threaded=False`; `moto_server` always threads).
 *   moto checks a conditional PUT's `If-None-Match: *` and then stores the object in two steps, so two
 *   threads could both pass the check; S3 decides such a race atomically, and serving requests in turn gives
 *   the same guarantee. Clients still send concurrently (their requests queue in the listen backlog).
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CACHE_ROOT,
  freePort,
  installPythonVenv,
  isAlive,
  runChecked,
  stopProcess,
  type ServiceDefinition,
} from './harness.ts';

export const MOTO_VERSION = '5.2.5';
const venvDir = path.join(CACHE_ROOT, `moto-${MOTO_VERSION}`);
const python = path.join(venvDir, 'bin', 'python');

const REGION = 'us-east-1';
const BUCKET = 'tributary-tests';

export interface S3Info {
  /** http://127.0.0.1:<port>; path-style addressing. */
  readonly endpoint: string;
  readonly region: string;
  /** A bucket that exists, shared by the tests: each test works under a prefix of its own. */
  readonly bucket: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly pid: number;
}

// The server: moto's WSGI application on werkzeug's development server, one request at a time.
const SERVER = `
import sys
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
app = DomainDispatcherApplication(create_backend_app)
run_simple('127.0.0.1', int(sys.argv[1]), app, threaded=False, request_handler=MotoRequestHandler)
`;

// The start-up, while moto still lets every request through: a user with every S3 right, its access key
// and the bucket; then authentication on for every later request. Prints the key as JSON.
const SETUP = `
import json, sys, boto3, urllib.request
endpoint, region, bucket = sys.argv[1:4]
kw = dict(endpoint_url=endpoint, region_name=region, aws_access_key_id='setup', aws_secret_access_key='setup')
iam = boto3.client('iam', **kw)
iam.create_user(UserName='tributary')
iam.put_user_policy(UserName='tributary', PolicyName='s3', PolicyDocument=json.dumps({
  'Version': '2012-10-17',
  'Statement': [{'Effect': 'Allow', 'Action': 's3:*', 'Resource': '*'}]}))
key = iam.create_access_key(UserName='tributary')['AccessKey']
boto3.client('s3', **kw).create_bucket(Bucket=bucket)
urllib.request.urlopen(urllib.request.Request(
  endpoint + '/moto-api/reset-auth', data=b'0', method='POST', headers={'Content-Type': 'text/plain'}))
print(json.dumps({'accessKeyId': key['AccessKeyId'], 'secretAccessKey': key['SecretAccessKey']}))
`;

async function answers(endpoint: string): Promise<boolean> {
  try {
    const response = await fetch(`${endpoint}/moto-api/`, { signal: AbortSignal.timeout(2_000) });
    await response.arrayBuffer();
    return response.ok;
  } catch {
    return false;
  }
}

export const s3: ServiceDefinition<S3Info> = {
  name: 's3',

  async install() {
    await installPythonVenv('s3', venvDir, `moto[server]==${MOTO_VERSION}`, [
      'moto.server',
      'boto3',
      'werkzeug',
    ]);
  },

  async start(stateDir) {
    const port = await freePort();
    const endpoint = `http://127.0.0.1:${port}`;
    const logFile = path.join(stateDir, 'moto.log');
    const log = openSync(logFile, 'w');
    const child = spawn(python, ['-c', SERVER, String(port)], {
      detached: true,
      stdio: ['ignore', log, log],
      env: { ...process.env, MOTO_PORT: String(port) },
    });
    closeSync(log);
    child.unref();
    const pid = child.pid;
    if (pid === undefined) throw new Error(`could not start moto (see ${logFile})`);
    const deadline = Date.now() + 60_000;
    while (!(await answers(endpoint))) {
      if (!isAlive(pid) || Date.now() > deadline) {
        if (isAlive(pid)) process.kill(pid, 'SIGKILL');
        throw new Error(`moto did not start on ${endpoint} (see ${logFile})`);
      }
      await sleep(200);
    }
    let keys: { accessKeyId: string; secretAccessKey: string };
    try {
      keys = JSON.parse(await runChecked(python, ['-c', SETUP, endpoint, REGION, BUCKET])) as typeof keys;
    } catch (error) {
      process.kill(pid, 'SIGKILL');
      throw error;
    }
    return { endpoint, region: REGION, bucket: BUCKET, ...keys, pid };
  },

  async isRunning(info) {
    return isAlive(info.pid) && (await answers(info.endpoint));
  },

  async stop(info) {
    await stopProcess(info.pid, 5_000);
  },
};
