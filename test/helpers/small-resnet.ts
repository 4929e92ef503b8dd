import { BottleneckResNet } from '../../engine/models/resnet50.js';
import type { NetworkOptions } from '../../engine/network.js';

/**
 * ResNet-50's network at a test's size: its 7x7 stride-2 stem with batch norm, max pool, two of its
 * bottleneck blocks (one with a projection shortcut, one carrying stride 2), global average pool and fc.
 * Every kind of kernel a ResNet-50 step runs (1x1, 3x3, 7x7 convolutions at strides 1 and 2, batch
 * norm, residual sums), on 16x16 images and 4 to 32 channels.
 */
export class SmallResNet extends BottleneckResNet {
  constructor(options: NetworkOptions) {
    super(options, {
      name: 'small-resnet',
      defaults: { inputShape: [16, 16, 3], numClasses: 10 },
      stemChannels: 8,
      blocks: [
        { name: 'layer1.0', width: 4, strides: 1, projection: true },
        { name: 'layer2.0', width: 8, strides: 2, projection: true },
      ],
    });
  }
}
