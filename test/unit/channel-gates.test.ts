import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { countNetwork } from '../../engine/counters.js';
import { channelRule, layerGating } from '../../engine/models/channel-gates.js';
import { buildNetwork } from '../../engine/models/index.js';
import { disposeNetwork } from '../../engine/network.js';
import { InputError } from '../../shared/errors.js';
import { skipBecause } from '../helpers/skip.js';
import { type ThinRequest, thinMacs, torchvisionMissing } from '../helpers/torchvision.js';

function refuses(run: () => unknown, ...parts: string[]): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof InputError, String(error));
    for (const part of parts) assert.ok(error.message.includes(part), `"${error.message}" should name ${part}`);
    return true;
  });
}

describe('channel gates (the paper’s channel rule)', function () {
  this.timeout(120_000);

  it('ResNet-50: neuron gates only on each bottleneck’s conv1 and conv2', () => {
    const gating = layerGating('resnet50', 'neuron', {});
    assert.equal(gating('layer1.0.conv1'), 'neuron');
    assert.equal(gating('layer3.5.conv2'), 'neuron');
    for (const layer of ['conv1', 'layer1.0.conv3', 'layer2.0.downsample.0', 'fc']) assert.equal(gating(layer), 'none', layer);
    assert.equal(channelRule('resnet50').groups.length, 32);
    assert.equal(layerGating('resnet50', 'weight', {})('layer1.0.conv3'), 'weight');
  });

  it('MobileNetV2: neuron gates on the expansions, carried through the depthwise convs', () => {
    const rule = channelRule('mobilenetv2');
    assert.equal(rule.groups.length, 16); // features.1 has no expansion
    assert.deepEqual(rule.groups[0], {
      layer: 'features.2.expand',
      batchNorm: 'features.2.expand.bn',
      depthwise: { layer: 'features.2.depthwise', batchNorm: 'features.2.depthwise.bn' },
      consumer: 'features.2.project',
    });
    const gating = layerGating('mobilenetv2', 'neuron', {});
    for (const layer of ['features.0.conv', 'features.2.depthwise', 'features.2.project', 'features.18.conv', 'classifier'])
      assert.equal(gating(layer), 'none');
  });

  it('AlexNet: weight by default, neuron on every layer but the logits', () => {
    assert.equal(layerGating('alexnet', 'weight', {})('conv3'), 'weight');
    const gating = layerGating('alexnet', 'neuron', {});
    assert.equal(gating('fc7'), 'neuron');
    assert.equal(gating('fc8'), 'none');
  });

  it('refuses a config that gates a channel feeding an addition, naming the layer', () => {
    refuses(() => layerGating('resnet50', 'weight', { 'layer2.1.conv3': 'neuron' }), 'model.layers.layer2.1.conv3', "layer2.1's residual addition");
    refuses(() => layerGating('resnet50', 'neuron', { 'layer3.0.downsample.0': 'neuron' }), 'model.layers.layer3.0.downsample.0', 'shortcut');
    // features.3 adds its input (features.2's output) back.
    refuses(
      () => layerGating('mobilenetv2', 'neuron', { 'features.2.project': 'neuron' }),
      'model.layers.features.2.project',
      "features.3's residual addition",
    );
    refuses(() => layerGating('alexnet', 'weight', { fc8: 'neuron' }), 'model.layers.fc8', 'gates no output channel');
    assert.equal(layerGating('resnet50', 'weight', { 'layer1.0.conv1': 'neuron' })('layer1.0.conv1'), 'neuron');
  });

  describe('effective FLOPs against torchvision built with the remaining channels', () => {
    before(async function () {
      const missing = await torchvisionMissing();
      if (missing) skipBecause(this, missing);
      await tf.setBackend('cpu');
    });

    for (const model of ['resnet50', 'mobilenetv2'] as const) {
      it(`${model}: MACs of the gated network = MACs of the thinned one`, async () => {
        const size = 64;
        const network = buildNetwork(model, {
          seed: 3,
          inputShape: [size, size, 3],
          granularityOf: layerGating(model, 'neuron', {}),
          maskInit: { mean: 0.5, std: 0.01 },
        });
        const channels: Record<string, number> = {};
        let flopsEffective: number;
        let flops: number;
        try {
          // Close a seeded third of each gated layer's channels (never all of them).
          let state = 12345;
          const random = () => {
            state = (state * 1103515245 + 12345) % 2 ** 31;
            return state / 2 ** 31;
          };
          for (const layer of network.maskedLayers) {
            if (layer.granularity !== 'neuron') continue;
            const m = Float32Array.from(layer.mask!.variable.dataSync(), (v, i) => (i > 0 && random() < 1 / 3 ? -v : v));
            layer.mask!.variable.assign(tf.tensor1d(m));
            channels[layer.name] = m.filter((v) => v >= 0).length;
          }
          ({ flops, flopsEffective } = (await countNetwork(network)).totals);
        } finally {
          disposeNetwork(network);
        }
        const request: ThinRequest = { model, size, channels };
        assert.equal(await thinMacs(request), flopsEffective);
        assert.ok(flopsEffective < flops);
      });
    }
  });
});
