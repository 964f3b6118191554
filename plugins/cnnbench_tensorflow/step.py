"""The compiled functions the adapter runs: the training step it times, and verify's forward and backward.

Both are ``tf.function``s (``jit_compile=True`` with the adapter option ``xla=on``). The loss is the mean
softmax cross-entropy over the batch, in float32 whatever the compute dtype. The step returns the loss
and every gradient: a ``tf.function`` prunes what it computes but neither returns nor writes to a
variable, so returning the gradients is what keeps the backward pass in the graph.
"""

from __future__ import annotations

import tensorflow as tf

from cnnbench_tensorflow.model import SpecNet

#: SGD with momentum, as the other adapters' optional update (``torch.optim.SGD(lr=0.01, momentum=0.9)``).
LEARNING_RATE, MOMENTUM = 0.01, 0.9
#: Dynamic loss scaling for fp16 updates, as PyTorch's GradScaler and Keras' LossScaleOptimizer do it.
INITIAL_SCALE, GROWTH_INTERVAL = 2.0**15, 2000


def mean_cross_entropy(logits, labels):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def make_train_step(net: SpecNet, *, xla: bool = False, optimizer: bool = False):
    """``step(x, y)`` -> (loss, gradients), or with ``optimizer`` the loss after an SGD update."""
    variables = net.variables_in_order
    if not optimizer:

        def train_step(x, y):
            with tf.GradientTape() as tape:
                loss = mean_cross_entropy(net(x, training=True), y)
            return loss, tape.gradient(loss, variables)

        return tf.function(train_step, jit_compile=xla)

    velocity = [tf.Variable(tf.zeros_like(v), trainable=False, name="velocity") for v in variables]
    # fp16 gradients underflow without loss scaling; bf16 has float32's exponent range and needs none.
    scaled = net.dtype == tf.float16
    scale = tf.Variable(INITIAL_SCALE if scaled else 1.0, trainable=False, name="loss_scale")
    good_steps = tf.Variable(0, trainable=False, name="good_steps")

    def sgd(grads):
        for var, grad, vel in zip(variables, grads, velocity):
            vel.assign(MOMENTUM * vel + grad)
            var.assign_sub(LEARNING_RATE * vel)

    def train_step_with_update(x, y):
        with tf.GradientTape() as tape:
            loss = mean_cross_entropy(net(x, training=True), y)
            scaled_loss = loss * scale if scaled else loss
        grads = tape.gradient(scaled_loss, variables)
        if not scaled:
            sgd(grads)
            return loss
        grads = [g / scale for g in grads]
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])

        def update():
            sgd(grads)
            grown = good_steps + 1 >= GROWTH_INTERVAL
            scale.assign(tf.where(grown, scale * 2.0, scale))
            good_steps.assign(tf.where(grown, 0, good_steps + 1))
            return tf.constant(True)

        def skip():  # an overflow: keep the weights, halve the scale
            scale.assign(scale / 2.0)
            good_steps.assign(0)
            return tf.constant(False)

        tf.cond(finite, update, skip)
        return loss

    return tf.function(train_step_with_update, jit_compile=xla)


def make_forward_backward(net: SpecNet, *, xla: bool = False):
    """``f(x, y)`` -> (loss, logits, gradients) with dropout passing its input through (for verify)."""
    variables = net.variables_in_order

    def forward_backward(x, y):
        with tf.GradientTape() as tape:
            logits = net(x, training=False)
            loss = mean_cross_entropy(logits, y)
        return loss, logits, tape.gradient(loss, variables)

    return tf.function(forward_backward, jit_compile=xla)
