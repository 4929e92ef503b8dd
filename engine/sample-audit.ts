import { readFileSync } from 'node:fs';
import type { StoredShard } from './data/source.js';
import { range, splitTrainingSet } from './sampling.js';
import { shardLookup, shardOwners } from './shard-order.js';
import { ShardedSampler } from './sharding.js';

/**
 * The sample audit: what workers started with `--sample-log` wrote (one JSON line per batch they took),
 * checked against the one-process plan. For each step the batches that count are those of the latest
 * generation that ran it (a step redone after a failure replaces the attempt that was cut short); together
 * they must be exactly the step's planned global batch: no sample lost, none repeated.
 */

export interface AuditEntry {
  readonly generation: number;
  readonly phaseIndex: number;
  readonly step: number;
  readonly kind: 'weight' | 'aux';
  readonly rank: number;
  readonly samples: readonly number[];
}

export interface AuditPlan {
  readonly seed: number;
  readonly trainSamples: number;
  readonly batchSize: number;
  readonly phases: ReadonlyArray<{ readonly phase: string; readonly steps: number }>;
  /** How the training set is stored (TFRecord shards, packs); omitted or empty for samples stored one by one. */
  readonly shards?: readonly StoredShard[];
}

export interface AuditResult {
  /** Planned samples that no counted batch took. */
  readonly lost: number;
  /** Samples taken more often than planned. */
  readonly repeated: number;
  /** Steps whose counted samples differ from the plan, as `phase:stream:step`. */
  readonly wrongSteps: readonly string[];
}

export function readAuditLogs(files: readonly string[]): AuditEntry[] {
  return files.flatMap((file) =>
    readFileSync(file, 'utf8')
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => JSON.parse(line) as AuditEntry),
  );
}

export function auditSamples(entries: readonly AuditEntry[], plan: AuditPlan): AuditResult {
  const key = (e: { phaseIndex: number; kind: string; step: number }) => `${e.phaseIndex}:${e.kind}:${e.step}`;
  const latest = new Map<string, number>();
  for (const e of entries) latest.set(key(e), Math.max(latest.get(key(e)) ?? 0, e.generation));
  const counted = new Map<string, number[]>();
  for (const e of entries) if (e.generation === latest.get(key(e))) counted.set(key(e), [...(counted.get(key(e)) ?? []), ...e.samples]);

  const split = splitTrainingSet(plan.seed, plan.trainSamples);
  let lost = 0;
  let repeated = 0;
  const wrongSteps: string[] = [];
  for (const [phaseIndex, phase] of plan.phases.entries()) {
    const streams =
      phase.phase === 'prune'
        ? [
            { kind: 'weight', name: `${phaseIndex}:weight`, members: split.weight },
            { kind: 'aux', name: `${phaseIndex}:aux`, members: split.aux },
          ]
        : [{ kind: 'weight', name: `${phaseIndex}:all`, members: range(plan.trainSamples) }];
    for (const stream of streams) {
      const sampler = new ShardedSampler(plan.seed, stream.name, stream.members, 1, 0, undefined, plan.shards);
      for (let step = 0; step < phase.steps; step++) {
        const expected = new Map<number, number>();
        for (const s of sampler.next(plan.batchSize).local) expected.set(s, (expected.get(s) ?? 0) + 1);
        let wrong = false;
        for (const s of counted.get(key({ phaseIndex, kind: stream.kind, step })) ?? []) {
          const left = expected.get(s) ?? 0;
          if (left === 0) {
            repeated++;
            wrong = true;
          } else expected.set(s, left - 1);
        }
        for (const left of expected.values()) {
          lost += left;
          if (left > 0) wrong = true;
        }
        if (wrong) wrongSteps.push(key({ phaseIndex, kind: stream.kind, step }));
      }
    }
  }
  return { lost, repeated, wrongSteps };
}

/**
 * Samples that a rank took from a shard another rank of its generation reads, in generations whose world
 * size lets ranks read whole shards (shardOwners); 0 when every rank kept to its own files.
 */
export function samplesOutsideOwnShards(entries: readonly AuditEntry[], shards: readonly StoredShard[]): number {
  const shardOf = shardLookup(shards);
  // A generation's world size: its highest rank that logged, plus one.
  const worlds = new Map<number, number>();
  for (const e of entries) worlds.set(e.generation, Math.max(worlds.get(e.generation) ?? 0, e.rank + 1));
  let outside = 0;
  for (const e of entries) {
    const owners = shardOwners(shards, worlds.get(e.generation)!);
    if (owners) outside += e.samples.filter((sample) => owners[shardOf(sample)] !== e.rank).length;
  }
  return outside;
}
