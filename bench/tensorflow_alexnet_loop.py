"""A minimal hand-written TensorFlow training loop for AlexNet v2 (convnet-benchmarks' definition),
the yardstick for cnnbench's TensorFlow harness: same step (forward, softmax cross-entropy, gradients of
every variable) as one ``tf.function``, written the way a Keras user would, NHWC, with no cnnbench code.

    python bench/tensorflow_alexnet_loop.py --batch-size 32 --min-time 1 --repeats 5

``--threads N`` sets the intra-op pool to N and the inter-op pool to 1, as cnnbench's ``--threads`` does;
without it TensorFlow's defaults hold, as in ``cnnbench run`` without ``--threads``.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# oneDNN, as cnnbench's --kernels vendor asks for: TensorFlow turns it on by itself only on CPUs with
# AVX-512 VNNI/BF16 or AMX, so without this the two would run different kernels elsewhere (an AMD EPYC).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402


def alexnet_v2() -> keras.Model:
    # conv1's pad 2 with stride 4 is not what "same" padding does (1 before, 2 after), hence the explicit
    # zero padding; the other convolutions' pads are "same"; 55 -> 27 -> 13 -> 6 as in Caffe's ceil rule.
    return keras.Sequential([
        keras.Input((224, 224, 3)),
        layers.ZeroPadding2D(2),
        layers.Conv2D(64, 11, strides=4, activation="relu"), layers.MaxPool2D(3, 2),
        layers.Conv2D(192, 5, padding="same", activation="relu"), layers.MaxPool2D(3, 2),
        layers.Conv2D(384, 3, padding="same", activation="relu"),
        layers.Conv2D(256, 3, padding="same", activation="relu"),
        layers.Conv2D(256, 3, padding="same", activation="relu"), layers.MaxPool2D(3, 2),
        layers.Flatten(),
        layers.Dense(4096, activation="relu"),
        layers.Dense(4096, activation="relu"),
        layers.Dense(1000),
    ])


def make_step(batch_size: int):
    """The training step on synthetic data made once: forward, cross-entropy, gradients."""
    keras.utils.set_random_seed(0)
    model = alexnet_v2()
    x = tf.random.normal([batch_size, 224, 224, 3])
    y = tf.random.uniform([batch_size], 0, 1000, dtype=tf.int32)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        return loss, tape.gradient(loss, model.trainable_variables)

    def step():
        return train_step(x, y)

    return step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    tf.config.set_visible_devices([], "GPU")
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    step = make_step(args.batch_size)
    for _ in range(args.warmup):
        step()[0].numpy()
    per_iter = []
    for _ in range(args.repeats):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < args.min_time:
            loss, _ = step()
            n += 1
        loss.numpy()  # the CPU runs a step synchronously: this only materialises the last loss
        per_iter.append((time.perf_counter() - start) / n)
    median = statistics.median(per_iter)
    threads = tf.config.threading.get_intra_op_parallelism_threads() or len(os.sched_getaffinity(0))
    print(f"hand-written loop: alexnet bs{args.batch_size} cpu fp32, threads {threads}: "
          f"{median * 1e3:.1f} ms/iter, {args.batch_size / median:.2f} images/s (median of {args.repeats} windows)")


if __name__ == "__main__":
    main()
