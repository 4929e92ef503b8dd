import * as tf from '@tensorflow/tfjs';

/**
 * Composition of wasm kernels inside another kernel. The compositions call the wasm backend's own
 * kernel functions on TensorInfos (as tfjs backends compose their kernels internally), so that the
 * work lands in XNNPACK convolutions, GEMMs and broadcasts and stays off the engine's tape and out
 * of its tensor bookkeeping.
 */

export type RunKernel = (kernelName: string, inputs: tf.NamedTensorInfoMap, attrs?: tf.NamedAttrMap) => tf.TensorInfo;
export type Track = (info: tf.TensorInfo) => tf.TensorInfo;

/**
 * Runs `body` with a `run` function that executes wasm kernels (and `track` for results made
 * otherwise); every TensorInfo they saw is released afterwards except the one `body` returns
 * (released too if `body` throws).
 */
export function composite(backend: tf.KernelBackend, body: (run: RunKernel, track: Track) => tf.TensorInfo): tf.TensorInfo {
  const made: tf.TensorInfo[] = [];
  const track: Track = (info) => {
    made.push(info);
    return info;
  };
  const run: RunKernel = (kernelName, inputs, attrs = {}) => {
    const kernel = tf.getKernel(kernelName, 'wasm');
    if (kernel === undefined) throw new Error(`wasm backend has no '${kernelName}' kernel`);
    return track(kernel.kernelFunc({ inputs, backend, attrs }) as tf.TensorInfo);
  };
  let result: tf.TensorInfo | undefined;
  try {
    result = body(run, track);
    return result;
  } finally {
    for (const info of made) if (info !== result) backend.disposeData(info.dataId);
  }
}
