// Mocha's spec reporter plus a closing line `N passed, N failed, N skipped` (the form CI reads),
// and, when LORA_SYNC_TEST_TALLY names a file, the counts appended to it so .ci/run can add suites up.

const Mocha = require('mocha');
const fs = require('node:fs');

class SummaryReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    runner.once(Mocha.Runner.constants.EVENT_RUN_END, () => {
      const s = runner.stats;
      const line = `${s.passes} passed, ${s.failures} failed, ${s.pending} skipped`;
      process.stdout.write(`\n${line}\n`);
      if (process.env.LORA_SYNC_TEST_TALLY)
        fs.appendFileSync(process.env.LORA_SYNC_TEST_TALLY, `${s.passes} ${s.failures} ${s.pending}\n`);
    });
  }
}
module.exports = SummaryReporter;
