import assert from 'node:assert/strict';
import { type AuditEntry, auditSamples } from '../../engine/sample-audit.js';
import { splitTrainingSet } from '../../engine/sampling.js';
import { ShardedSampler } from '../../engine/sharding.js';

const plan = { seed: 3, trainSamples: 40, batchSize: 6, phases: [{ phase: 'prune', steps: 10 }] };

/** What `world` workers log for steps [from, to) of the prune phase in `generation`. */
function logged(generation: number, world: number, from: number, to: number): AuditEntry[] {
  const split = splitTrainingSet(plan.seed, plan.trainSamples);
  const entries: AuditEntry[] = [];
  for (const [kind, members] of [
    ['weight', split.weight],
    ['aux', split.aux],
  ] as const) {
    for (let rank = 0; rank < world; rank++) {
      const sampler = new ShardedSampler(plan.seed, `0:${kind}`, members, world, rank);
      for (let step = 0; step < to; step++) {
        const { local } = sampler.next(plan.batchSize);
        if (step >= from) entries.push({ generation, phaseIndex: 0, step, kind, rank, samples: [...local] });
      }
    }
  }
  return entries;
}

describe('sample audit', () => {
  it('passes a run whose failed attempt at steps 4..6 was redone by a smaller generation', () => {
    const entries = [...logged(1, 3, 0, 6), ...logged(2, 2, 4, 10)];
    assert.deepEqual(auditSamples(entries, plan), { lost: 0, repeated: 0, wrongSteps: [] });
  });

  it('counts a lost and a repeated sample, naming the steps', () => {
    const entries = logged(1, 2, 0, 10);
    const victim = entries.find((e) => e.kind === 'aux' && e.step === 7 && e.rank === 1)!;
    const dropped = victim.samples[0]!;
    entries[entries.indexOf(victim)] = { ...victim, samples: victim.samples.slice(1) };
    const other = entries.find((e) => e.kind === 'weight' && e.step === 2 && e.rank === 0)!;
    entries[entries.indexOf(other)] = { ...other, samples: [...other.samples, other.samples[0]!] };
    const result = auditSamples(entries, plan);
    assert.equal(result.lost, 1, `sample ${dropped} is missing`);
    assert.equal(result.repeated, 1);
    assert.deepEqual(result.wrongSteps, ['0:weight:2', '0:aux:7']);
  });
});
