import { type Checkpoint, encodeCheckpointSnapshot } from '../shared/checkpoint.js';
import type { StoredCheckpoint } from '../shared/checkpoint-store.js';
import { configHash, type RunConfig } from '../shared/config.js';
import { InputError } from '../shared/errors.js';
import type { Logger } from '../shared/logging.js';
import { isAfter, type Position } from './decisions.js';
import { readInitCheckpoint } from './run-directory.js';

/**
 * The states a run holds in memory: the snapshots that tasks with restoreState load (a dense phase's
 * `init`, or the state the run goes on from), and the newest state of the run, from rank 0's uploads or
 * offered by survivors while the run re-forms.
 */
export class StateStore {
  /** Snapshots that tasks with restoreState load, by phase index. */
  private readonly startStates = new Map<number, Buffer>();
  private newest: Checkpoint | undefined;

  private constructor(private readonly initStates: ReadonlyMap<number, Buffer>) {
    this.loadInitStates();
  }

  /** Reads the checkpoints that dense phases with `init` start from, and takes the one a resumed run goes on from. */
  static async load(config: RunConfig, logger: Logger, resume: StoredCheckpoint | undefined): Promise<StateStore> {
    const initStates = new Map<number, Buffer>();
    for (const [index, phase] of config.phases.entries()) {
      if (phase.phase !== 'dense' || phase.init === undefined) continue;
      initStates.set(index, encodeCheckpointSnapshot(await readInitCheckpoint(config, index, phase.init, logger)));
    }
    const store = new StateStore(initStates);
    if (resume) {
      if (resume.checkpoint.position.configHash !== configHash(config))
        throw new InputError(resume.path, 'belongs to another config than the run directory holds');
      store.commit(resume.checkpoint);
    }
    return store;
  }

  /** The newest state of the run: what it goes on from, and what the results are made of. */
  get latest(): Checkpoint | undefined {
    return this.newest;
  }

  /** Where the newest state stands (undefined: the run's beginning). */
  get restartPoint(): Position | undefined {
    const position = this.newest?.position;
    return position && { phaseIndex: position.phaseIndex, step: position.step };
  }

  /** The snapshot a task with restoreState loads in phase `phaseIndex`, if that phase starts from one. */
  startState(phaseIndex: number): Buffer | undefined {
    return this.startStates.get(phaseIndex);
  }

  /** A state rank 0 uploaded for a checkpoint: it becomes the newest. */
  commit(checkpoint: Checkpoint): void {
    this.newest = checkpoint;
  }

  /** A survivor's last completed step while the run re-forms: kept only if further on than what the run holds. */
  offer(checkpoint: Checkpoint): void {
    if (!this.newest || isAfter(checkpoint.position, this.newest.position)) this.newest = checkpoint;
  }

  /** The run (re)starts at phase `firstPhase`: its first task loads the newest state; later dense phases their `init`. */
  startFrom(firstPhase: number | undefined): void {
    this.startStates.clear();
    this.loadInitStates();
    if (this.newest && firstPhase !== undefined) this.startStates.set(firstPhase, encodeCheckpointSnapshot(this.newest));
  }

  private loadInitStates(): void {
    for (const [index, state] of this.initStates) this.startStates.set(index, state);
  }
}
