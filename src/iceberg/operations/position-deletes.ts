/**
 * Position delete files (merge-on-read): Parquet files of (file_path, pos) naming rows of data files
 * that no longer exist. One file per partition of the data files they point at, as the spec requires.
 */
import { randomUUID } from 'node:crypto';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { TributaryError } from '../../errors.ts';
import { fieldIdsOption } from '../data-files.ts';
import { quoteLiteral, type Engine } from '../duckdb.ts';
import type { DataFile } from '../manifest.ts';
import { schemaForPartitionSpecs, specById, type TableMetadata } from '../metadata.ts';
import { readFileMetrics } from '../parquet-metrics.ts';
import { partitionPath } from '../partition-spec.ts';
import type { PlannedFile } from '../scan.ts';
import type { Table } from '../table.ts';
import type { StructType } from '../types.ts';

export const DELETE_FILE_PATH_ID = 2147483546;
export const DELETE_POS_ID = 2147483545;

const positionDeleteSchema: StructType = {
  type: 'struct',
  fields: [
    { id: DELETE_FILE_PATH_ID, name: 'file_path', required: true, type: 'string' },
    { id: DELETE_POS_ID, name: 'pos', required: true, type: 'long' },
  ],
};

/** A delete file with the partition spec of the data files it applies to. */
export type SpecifiedFile = DataFile & { readonly specId: number };

/**
 * Writes position delete files for the rows in `relation` (columns `_file`: a data file location,
 * `_pos`: a row position). `dataFiles` are the planned data files the positions refer to.
 */
export async function writePositionDeletes(
  table: Table,
  engine: Engine,
  relation: string,
  dataFiles: readonly PlannedFile[],
): Promise<SpecifiedFile[]> {
  const byLocation = new Map(dataFiles.map((p) => [p.file.filePath, p]));
  const touched = await engine.connection.runAndReadAll(`select distinct _file from ${relation}`);
  const groups = new Map<string, { specId: number; partition: DataFile['partition']; locations: string[] }>();
  for (const [location] of touched.getRows()) {
    const planned = byLocation.get(String(location));
    if (!planned)
      throw new TributaryError(
        'INTERNAL',
        `position delete for a file outside the scan: ${String(location)}`,
      );
    const key = `${planned.specId}/${JSON.stringify(planned.file.partition, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v))}`;
    const group = groups.get(key) ?? {
      specId: planned.specId,
      partition: planned.file.partition,
      locations: [],
    };
    group.locations.push(String(location));
    groups.set(key, group);
  }
  const files: SpecifiedFile[] = [];
  for (const group of groups.values()) {
    files.push(await writeGroup(table, engine, relation, group));
  }
  return files;
}

async function writeGroup(
  table: Table,
  engine: Engine,
  relation: string,
  group: { specId: number; partition: DataFile['partition']; locations: string[] },
): Promise<SpecifiedFile> {
  const metadata: TableMetadata = table.metadata;
  const spec = specById(metadata, group.specId);
  const relative = spec.fields.length
    ? partitionPath(spec, schemaForPartitionSpecs(metadata), group.partition)
    : '';
  const location = `${table.location}/data/${relative ? `${relative}/` : ''}${randomUUID()}-deletes.parquet`;
  const staging = await table.files.stage(`${table.location}/data`);
  try {
    const local = path.join(staging.path, path.basename(location));
    const inList = group.locations.map(quoteLiteral).join(', ');
    await engine.connection.run(
      `copy (select _file as file_path, _pos::BIGINT as pos from ${relation} where _file in (${inList}) order by file_path, pos)
         to ${quoteLiteral(local)} (format parquet, compression zstd, field_ids ${fieldIdsOption(positionDeleteSchema)})`,
    );
    const metrics = await readFileMetrics(engine.connection, local, positionDeleteSchema);
    const fileSizeInBytes = (await stat(local)).size;
    // Stored durably (DuckDB flushes nothing) before a commit names it.
    await staging.publish([{ localPath: local, location }]);
    return {
      content: 'position-deletes',
      filePath: location,
      fileFormat: 'PARQUET',
      partition: group.partition,
      fileSizeInBytes,
      specId: group.specId,
      ...metrics,
    };
  } finally {
    await staging.dispose();
  }
}
