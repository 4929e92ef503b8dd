/** `work` applied to every item with at most `limit` calls in flight; results in the items' order. */
export async function mapLimited<T, R>(items: readonly T[], limit: number, work: (item: T, position: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const position = next++;
      results[position] = await work(items[position]!, position);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, lane));
  return results;
}
