/**
 * The states of a worker agent and the moves between them:
 *
 *   starting → registering → rendezvous → training → finished
 *                  ↑             ↑    ↖      │ GenerationEnded, CollectiveFailed
 *                  │             │     rejoining ←┘
 *                  └─────────────┴── CoordinatorLost (from rendezvous or training)
 *
 * and failed from any state but finished. A move the table does not allow is a bug, and throws.
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
