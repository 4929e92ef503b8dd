// Mocha's spec output, then the plain `N passed, N failed` line that CI reads as the last line.
const Mocha = require('mocha');

const { EVENT_RUN_END } = Mocha.Runner.constants;

class SpecWithSummary extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    runner.once(EVENT_RUN_END, () => {
      process.stdout.write(`${runner.stats.passes} passed, ${runner.stats.failures} failed\n`);
    });
  }
}

module.exports = SpecWithSummary;
