import * as tf from '@tensorflow/tfjs';

/**
 * Inference time per image of a LayersModel on the current backend: one image at a time, two runs to
 * warm up (kernels compile, weights upload), then the median of `runs`. A product measurement taken at
 * export time, printed in the report; never asserted in a test.
 */
const WARM_UP_RUNS = 2;

export async function millisecondsPerImage(model: tf.LayersModel, inputShape: readonly number[], runs: number): Promise<number> {
  const image = tf.randomUniform([1, ...inputShape], -1, 1, 'float32', 1);
  try {
    const once = async () => {
      const start = performance.now();
      const output = model.predict(image) as tf.Tensor;
      await output.data();
      output.dispose();
      return performance.now() - start;
    };
    for (let i = 0; i < WARM_UP_RUNS; i++) await once();
    const times: number[] = [];
    for (let i = 0; i < runs; i++) times.push(await once());
    times.sort((a, b) => a - b);
    return times[Math.floor(times.length / 2)]!;
  } finally {
    image.dispose();
  }
}
