import assert from 'node:assert/strict';
import { BadSampleLedger } from '../../coordinator/bad-samples.js';

const sample = (index: number, offset = -1) => ({
  split: 'train',
  file: `/data/train/n0${index}.JPEG`,
  offset,
  reason: 'CRC-32C of the data does not match',
  splitSize: 200,
});

describe('the bad-sample ledger', () => {
  it('counts each bad sample once however often workers meet it, and lists it for report.json', () => {
    const failures: string[] = [];
    const ledger = new BadSampleLedger(0.05, (reason) => failures.push(reason));
    ledger.add([sample(3, 1024), sample(8)]);
    ledger.add([sample(3, 1024)]);
    ledger.add([{ ...sample(3), split: 'test', splitSize: 50 }]);
    assert.deepEqual(failures, []);
    assert.deepEqual(ledger.report, {
      badSamples: 3,
      skipped: [
        { split: 'train', file: '/data/train/n03.JPEG', offset: 1024, reason: 'CRC-32C of the data does not match' },
        { split: 'train', file: '/data/train/n08.JPEG', reason: 'CRC-32C of the data does not match' },
        { split: 'test', file: '/data/train/n03.JPEG', reason: 'CRC-32C of the data does not match' },
      ],
    });
  });

  it('fails the run once a split has more bad samples than data.maxBadFraction allows, naming the last', () => {
    const failures: string[] = [];
    const ledger = new BadSampleLedger(0.01, (reason) => failures.push(reason));
    ledger.add([sample(1), sample(2)]);
    assert.deepEqual(failures, []);
    ledger.add([sample(5, 4096)]);
    assert.equal(failures.length, 1);
    assert.match(
      failures[0]!,
      /3 of the 200 train samples are bad, more than data.maxBadFraction \(0.01\) allows; the last: \/data\/train\/n05.JPEG at byte 4096: CRC-32C/,
    );
  });
});
