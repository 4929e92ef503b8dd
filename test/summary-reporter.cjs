// Mocha's spec output, then why each skipped test was skipped, then the plain
// `N passed, N failed, N skipped` line that CI reads as the last line.
const Mocha = require('mocha');

const { EVENT_RUN_END, EVENT_TEST_PENDING } = Mocha.Runner.constants;

class SpecWithSummary extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    const skipped = [];
    runner.on(EVENT_TEST_PENDING, (test) => skipped.push(`${test.fullTitle()}: ${skipReason(test)}`));
    runner.once(EVENT_RUN_END, () => {
      if (skipped.length > 0) process.stdout.write(`skipped:\n${skipped.map((line) => `  - ${line}\n`).join('')}\n`);
      const { passes, failures, pending } = runner.stats;
      process.stdout.write(`${passes} passed, ${failures} failed, ${pending} skipped\n`);
    });
  }
}

/** The reason test/helpers/skip.ts recorded on the test or a suite around it. */
function skipReason(test) {
  for (let node = test; node; node = node.parent) {
    if (typeof node.skipReason === 'string') return node.skipReason;
  }
  return 'no reason given: skipped without skipBecause (test/helpers/skip.ts)';
}

module.exports = SpecWithSummary;
