/** What every command receives: the global options, resolved once. */
import { pipelineSchema, sourceSchema } from '../components.ts';
import { loadProject, type Project } from '../core/project.ts';

export interface CliContext {
  /** --project, or the current directory (the project is the nearest tributary.yaml above it). */
  readonly projectDir: string;
  readonly verbose: boolean;
  loadProject(): Project;
}

export function createContext(options: { project?: string; verbose?: boolean }): CliContext {
  const projectDir = options.project ?? process.cwd();
  return {
    projectDir,
    verbose: options.verbose ?? false,
    loadProject: () => loadProject(projectDir, { pipelineSchema, sourceSchema }),
  };
}
