/** Every transform Tributary ships, registered for pipeline files (see core/pipeline/components.ts). */
import type { TransformDefinition } from '../core/pipeline/components.ts';
import { castTransform } from './cast/cast.ts';
import { dedupeTransform } from './dedupe/dedupe.ts';
import { dropTransform } from './drop/drop.ts';
import { filterTransform } from './filter/filter.ts';
import { mapTransform } from './map/map.ts';
import { maskTransform } from './mask/mask.ts';
import { renameTransform } from './rename/rename.ts';
import { sqlTransform } from './sql/sql.ts';
import { validateTransform } from './validate/validate.ts';

export const transformDefinitions: readonly TransformDefinition[] = [
  validateTransform,
  mapTransform,
  filterTransform,
  renameTransform,
  dropTransform,
  castTransform,
  maskTransform,
  dedupeTransform,
  sqlTransform,
];
