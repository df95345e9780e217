/**
 * Apache Kafka for the Kafka log backend's tests: the broker's jars from Maven Central (Maven resolves
 * kafka_2.13 and what it needs into ~/.cache/tributary/kafka-<version>/libs, with a log4j binding so the
 * broker logs to a file), one KRaft node that is broker and controller at once, on loopback on private
 * ports, with a fresh data directory at each start.
 *
 * Sized for a small machine: a small heap, a few threads, and the internal topics (consumer offsets,
 * transactions) with one replica and few partitions. Topics are never created by a mere metadata request
 * or produce (`auto.create.topics.enable=false`), as the log expects of a production cluster.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Admin } from '@platformatic/kafka';
import {
  CACHE_ROOT,
  commandExists,
  freePort,
  isAlive,
  run,
  runChecked,
  stopProcess,
  ServiceUnavailable,
  type ServiceDefinition,
} from './harness.ts';

export const KAFKA_VERSION = '4.1.1';
const installDir = path.join(CACHE_ROOT, `kafka-${KAFKA_VERSION}`);
const libs = path.join(installDir, 'libs');
const marker = path.join(installDir, '.installed');
const LOG4J_VERSION = '2.24.3';

export interface KafkaInfo {
  /** host:port of the one broker. */
  readonly brokers: readonly string[];
  readonly pid: number;
}

// The broker (kafka_2.13 brings the server, storage and raft modules) and log4j behind slf4j.
const POM = `<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>tributary.test</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>${KAFKA_VERSION}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>${KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>${LOG4J_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>${LOG4J_VERSION}</version></dependency>
  </dependencies>
</project>
`;

const LOG4J = `status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = \${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = info
`;

const JVM_OPTIONS = [
  '-Xms64m',
  '-Xmx384m',
  '-XX:+UseSerialGC',
  '-XX:TieredStopAtLevel=1',
  '-Djava.awt.headless=true',
];

function java(stateDir: string, main: string, args: readonly string[]): [string, string[]] {
  return [
    'java',
    [
      ...JVM_OPTIONS,
      '-cp',
      `${libs}/*`,
      `-Dlog4j2.configurationFile=${path.join(stateDir, 'log4j2.properties')}`,
      `-Dkafka.logs.dir=${stateDir}`,
      main,
      ...args,
    ],
  ];
}

/** Whether the broker answers a metadata request. */
async function answers(brokers: readonly string[]): Promise<boolean> {
  const admin = new Admin({
    clientId: 'tributary-test-harness',
    bootstrapBrokers: [...brokers],
    timeout: 2_000,
    connectTimeout: 2_000,
    retries: 0,
  });
  try {
    const metadata = await admin.metadata({ topics: [] });
    return metadata.brokers.size > 0;
  } catch {
    return false;
  } finally {
    await admin.close().catch(() => undefined);
  }
}

export const kafka: ServiceDefinition<KafkaInfo> = {
  name: 'kafka',

  async install() {
    if (existsSync(marker)) return;
    for (const command of ['java', 'mvn']) {
      if (!commandExists(command))
        throw new ServiceUnavailable(
          'kafka',
          `${command} is not installed: install a Java 17 runtime and Maven (apt-get install openjdk-17-jre-headless maven)`,
        );
    }
    rmSync(installDir, { recursive: true, force: true });
    mkdirSync(installDir, { recursive: true });
    writeFileSync(path.join(installDir, 'pom.xml'), POM);
    const copied = await run(
      'mvn',
      ['-B', '-q', 'dependency:copy-dependencies', `-DoutputDirectory=${libs}`, '-DincludeScope=runtime'],
      { cwd: installDir },
    );
    if (copied.code !== 0)
      throw new ServiceUnavailable(
        'kafka',
        `Maven could not fetch Apache Kafka ${KAFKA_VERSION} from Maven Central: ${(copied.stdout + copied.stderr).trim().slice(-500)}`,
      );
    writeFileSync(marker, '');
  },

  async start(stateDir) {
    const [port, controllerPort] = [await freePort(), await freePort()];
    const dataDir = path.join(stateDir, 'data');
    rmSync(dataDir, { recursive: true, force: true });
    const properties = path.join(stateDir, 'server.properties');
    writeFileSync(
      properties,
      [
        'process.roles=broker,controller',
        'node.id=1',
        `controller.quorum.voters=1@127.0.0.1:${controllerPort}`,
        `listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}`,
        `advertised.listeners=PLAINTEXT://127.0.0.1:${port}`,
        'controller.listener.names=CONTROLLER',
        'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
        'inter.broker.listener.name=PLAINTEXT',
        `log.dirs=${dataDir}`,
        'auto.create.topics.enable=false',
        'num.partitions=1',
        'num.network.threads=2',
        'num.io.threads=2',
        'background.threads=2',
        'num.recovery.threads.per.data.dir=1',
        'offsets.topic.replication.factor=1',
        'offsets.topic.num.partitions=4',
        'transaction.state.log.replication.factor=1',
        'transaction.state.log.min.isr=1',
        'transaction.state.log.num.partitions=4',
        'share.coordinator.state.topic.replication.factor=1',
        'share.coordinator.state.topic.min.isr=1',
        'group.initial.rebalance.delay.ms=0',
        '',
      ].join('\n'),
    );
    writeFileSync(path.join(stateDir, 'log4j2.properties'), LOG4J);
    const clusterId = (
      await runChecked(...java(stateDir, 'kafka.tools.StorageTool', ['random-uuid']))
    ).trim();
    await runChecked(
      ...java(stateDir, 'kafka.tools.StorageTool', ['format', '-t', clusterId, '-c', properties]),
    );
    const outFile = path.join(stateDir, 'kafka.out');
    const out = openSync(outFile, 'w');
    const [command, args] = java(stateDir, 'kafka.Kafka', [properties]);
    const child = spawn(command, args, { detached: true, stdio: ['ignore', out, out] });
    closeSync(out);
    child.unref();
    const pid = child.pid;
    if (pid === undefined) throw new Error(`could not start Kafka (see ${outFile})`);
    const brokers = [`127.0.0.1:${port}`];
    const deadline = Date.now() + 90_000;
    while (!(await answers(brokers))) {
      if (!isAlive(pid) || Date.now() > deadline) {
        if (isAlive(pid)) process.kill(pid, 'SIGKILL');
        throw new Error(
          `Kafka did not start on ${brokers[0]} (see ${outFile} and ${path.join(stateDir, 'server.log')})`,
        );
      }
      await sleep(300);
    }
    return { brokers, pid };
  },

  async isRunning(info) {
    return isAlive(info.pid) && (await answers(info.brokers));
  },

  async stop(info) {
    await stopProcess(info.pid, 15_000);
  },
};
