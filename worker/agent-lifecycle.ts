/**
 * The states of a worker agent and the moves between them:
 *
 *   starting → registering → rendezvous → training → finished
 *   training → rejoining → rendezvous          after GenerationEnded or CollectiveFailed
 *   rendezvous | training → registering        after CoordinatorLost
 *   any state but finished → failed
 *
 * `finished`: the run ended, completed or failed, and the worker with it; `failed`: the worker itself
 * could not go on. A move the table does not allow is a bug, and throws.
 */

export type AgentState = 'starting' | 'registering' | 'rendezvous' | 'training' | 'rejoining' | 'finished' | 'failed';

const MOVES: Readonly<Record<AgentState, readonly AgentState[]>> = {
  starting: ['registering', 'failed'],
  registering: ['rendezvous', 'failed'],
  rendezvous: ['training', 'registering', 'failed'],
  training: ['finished', 'rejoining', 'registering', 'failed'],
  rejoining: ['rendezvous', 'failed'],
  finished: [],
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
