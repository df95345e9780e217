/** Paths in component configs: absolute, or relative to the project root. */
import path from 'node:path';

export function resolveProjectPath(projectRoot: string, configured: string): string {
  return path.resolve(projectRoot, configured);
}
