/**
 * Reports that every rank of a generation sends about the same point of the run (a step, an evaluation),
 * gathered until all `world` ranks have sent theirs.
 */
export class RankReports<T extends { readonly rank: number; readonly phaseIndex: number; readonly step: number }> {
  private readonly byPoint = new Map<string, Map<number, T>>();

  /** Adds `report`; once every rank has reported on its point, returns all of them (and forgets them). */
  add(report: T, world: number): T[] | undefined {
    const key = `${report.phaseIndex}:${report.step}`;
    const byRank = this.byPoint.get(key) ?? new Map<number, T>();
    byRank.set(report.rank, report);
    this.byPoint.set(key, byRank);
    if (byRank.size < world) return undefined;
    this.byPoint.delete(key);
    return [...byRank.values()];
  }

  /** Forgets partial reports: the generation they came from is gone. */
  clear(): void {
    this.byPoint.clear();
  }
}
