/**
 * One-time TensorFlow.js backend setup: the wasm backend (portable, no native build),
 * with the .wasm binaries loaded from node_modules as a file path; 'cpu' only if wasm fails.
 */
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { createRequire } from 'node:module';
import path from 'node:path';
import { createLogger } from '../../common/log.ts';

let ready: Promise<string> | null = null;

/** Resolves to the backend in use ('wasm', or 'cpu' after a logged warning). */
export function initTfBackend(): Promise<string> {
  ready ??= (async () => {
    try {
      const require = createRequire(import.meta.url);
      const pkg = require.resolve('@tensorflow/tfjs-backend-wasm/package.json');
      setWasmPaths(path.join(path.dirname(pkg), 'dist') + path.sep);
      if (!(await tf.setBackend('wasm'))) throw new Error('tf.setBackend("wasm") returned false');
    } catch (err) {
      createLogger('forecast').warn({ err: String(err) }, 'tfjs wasm backend unavailable, falling back to cpu');
      await tf.setBackend('cpu');
    }
    await tf.ready();
    return tf.getBackend();
  })();
  return ready;
}

export { tf };
