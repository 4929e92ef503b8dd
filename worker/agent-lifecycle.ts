/**
 * The states of a worker agent and the moves between them:
 *
 *   starting → registering → rendezvous → training → finished
 *   training → rejoining → rendezvous          after GenerationEnded or CollectiveFailed
 *   rendezvous | training → registering        after CoordinatorLost or CoordinatorStopping
 *   registering → fenced                        registering again, refused: the run goes on without it
 *   any state but the ends → stopped            told to stop (SIGTERM): its state offered, it leaves
 *   any state but the ends → failed
 *
 * `finished`: the run ended, completed or failed, and the worker with it; `fenced`: the run goes on, but
 * this worker cannot rejoin it (its place was taken, or its generation is past); `stopped`: told to stop;
 * `failed`: the worker itself could not go on. A move the table does not allow is a bug, and throws.
 */

export type AgentState = 'starting' | 'registering' | 'rendezvous' | 'training' | 'rejoining' | 'finished' | 'fenced' | 'stopped' | 'failed';

const MOVES: Readonly<Record<AgentState, readonly AgentState[]>> = {
  starting: ['registering', 'stopped', 'failed'],
  registering: ['rendezvous', 'fenced', 'stopped', 'failed'],
  rendezvous: ['training', 'registering', 'stopped', 'failed'],
  training: ['finished', 'rejoining', 'registering', 'stopped', 'failed'],
  rejoining: ['rendezvous', 'stopped', 'failed'],
  finished: [],
  fenced: [],
  stopped: [],
  failed: [],
};

export class AgentLifecycle {
  private current: AgentState = 'starting';

  constructor(private readonly onMove: (from: AgentState, to: AgentState) => void = () => {}) {}

  get state(): AgentState {
    return this.current;
  }

  moveTo(next: AgentState): void {
    if (!MOVES[this.current].includes(next)) throw new Error(`worker agent: no move from ${this.current} to ${next}`);
    const from = this.current;
    this.current = next;
    this.onMove(from, next);
  }
}
