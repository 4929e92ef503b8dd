/**
 * The one way to skip a test: it records why, and test/summary-reporter.cjs prints the reasons above
 * the counts. Skip only for a fact about the machine, established before the code under test runs
 * (never in a catch block), so that a skip cannot hide a failure. test/unit/skip-reasons.test.ts
 * checks that no test skips another way.
 */

/** Where the reporter looks for the reason: on the skipped test, else on the suites around it. */
interface WithSkipReason {
  skipReason?: string;
}

/**
 * Skips the running test, or from a before-all hook every test of its suite, because of `reason`.
 * Call it as `skipBecause(this, '...')` from a `function () {}` test or hook.
 */
export function skipBecause(context: Mocha.Context, reason: string): never {
  const runnable = context.test;
  const isHook = (runnable as { type?: string } | undefined)?.type === 'hook';
  // A before-each hook skips the current test; a before-all hook, the whole suite.
  const skipped = isHook ? (runnable!.title.startsWith('"before each" hook') ? context.currentTest : runnable!.parent) : runnable;
  if (skipped) (skipped as WithSkipReason).skipReason = reason;
  context.skip();
}
