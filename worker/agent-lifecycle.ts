/**
 * The states of a worker agent and the moves between them:
 *
 *   starting → registering → rendezvous → training → finished
 *   training → rejoining → rendezvous          after GenerationEnded or CollectiveFailed
 *   rendezvous | training → registering        after CoordinatorLost
 *   registering → fenced                        registering again, refused: the run goes on without it
 *   any state but the three ends → failed
 *
 * `finished`: the run ended, completed or failed, and the worker with it; `fenced`: the run goes on, but
 * this worker cannot rejoin it (its place was taken, or its generation is past); `failed`: the worker itself
 * could not go on. A move the table does not allow is a bug, and throws.
 */

export type AgentState = 'starting' | 'registering' | 'rendezvous' | 'training' | 'rejoining' | 'finished' | 'fenced' | 'failed';

const MOVES: Readonly<Record<AgentState, readonly AgentState[]>> = {
  starting: ['registering', 'failed'],
  registering: ['rendezvous', 'fenced', 'failed'],
  rendezvous: ['training', 'registering', 'failed'],
  training: ['finished', 'rejoining', 'registering', 'failed'],
  rejoining: ['rendezvous', 'failed'],
  finished: [],
  fenced: [],
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
