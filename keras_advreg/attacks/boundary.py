"""Exact projections onto a hyperplane intersected with the box, for FAB.

FAB (Croce & Hein 2020, arXiv 1907.02044, sec. 3.1 and appendix) moves each
point to its nearest point on the linearized decision boundary that is also a
valid input: for a point p, a normal w and an offset c it solves

    min ||d||_p  subject to  w . (p + d) = c,  clip_min <= p + d <= clip_max.

With r = c - w . p made non-negative (flip w and r), only coordinates moving
along sign(w_i) help, each by at most its room to the box, cap_i. Then

- l1 is a fractional knapsack: fill the coordinates in decreasing |w_i| until
  w . d = r;
- linf has d_i = sign(w_i) min(t, cap_i) and l2 has d_i = clip(t w_i, box) (the
  KKT conditions), with the scalar t found exactly: w . d(t) is piecewise
  linear and non-decreasing in t, so sorting its breakpoints locates the piece
  where it reaches r.

When no box point reaches the hyperplane the result is the box corner of
largest progress w . d (d_i = cap_i sign(w_i)). All functions act on flat
batches (batch, n) and compute in float64, then cast back.
"""

import tensorflow as tf

_TINY = 1e-30

# Per-example norms of flat (batch, n) tensors, and the dual norm of each.
NORMS = {
    "linf": lambda d: tf.reduce_max(tf.abs(d), axis=-1),
    "l2": lambda d: tf.norm(d, axis=-1),
    "l1": lambda d: tf.reduce_sum(tf.abs(d), axis=-1),
}
DUAL_NORMS = {"linf": NORMS["l1"], "l2": NORMS["l2"], "l1": NORMS["linf"]}


def project_onto_hyperplane_in_box(points, w, c, norm, clip_min, clip_max):
    """The smallest step `d` with `w . (points + d) = c` inside the box.

    Args:
        points: flat points (batch, n), inside `[clip_min, clip_max]`.
        w: the hyperplanes' normals (batch, n).
        c: the hyperplanes' offsets (batch,).
        norm: "linf", "l2" or "l1", the norm of `d` minimized.
        clip_min: the smallest valid input value.
        clip_max: the largest valid input value.

    Returns:
        `d` (batch, n) in the dtype of `points`; where the box does not reach
        the hyperplane, the box corner nearest to it.
    """
    dtype = points.dtype
    p, w, c = (tf.cast(t, tf.float64) for t in (points, w, c))
    residual = c - tf.reduce_sum(w * p, axis=-1)
    w = tf.where(residual[:, None] < 0, -w, w)  # now w . d = |residual| >= 0
    residual = tf.abs(residual)
    direction = tf.sign(w)
    room = tf.maximum(tf.where(w > 0, clip_max - p, p - clip_min), 0.0)
    room = tf.where(w == 0, tf.zeros_like(room), room)
    rate = tf.abs(w)
    reachable = tf.reduce_sum(rate * room, axis=-1) >= residual
    amount = _SOLVERS[norm](rate, room, residual)
    amount = tf.where(reachable[:, None], amount, room)
    return tf.cast(direction * amount, dtype)


def _first_reaching(cumulative, target):
    """Per row, the first index where a non-decreasing row reaches `target`."""
    below = tf.reduce_sum(tf.cast(cumulative < target[:, None], tf.int32), axis=-1)
    return tf.minimum(below, tf.shape(cumulative)[-1] - 1)


def _l1_amounts(rate, room, residual):
    """Fractional knapsack: the steepest coordinates first, each up to its room."""
    order = tf.argsort(rate, axis=-1, direction="DESCENDING")
    rate_s = tf.gather(rate, order, batch_dims=1)
    room_s = tf.gather(room, order, batch_dims=1)
    gained = tf.cumsum(rate_s * room_s, axis=-1)
    k = _first_reaching(gained, residual)
    before = tf.gather(gained - rate_s * room_s, k[:, None], batch_dims=1)[:, 0]
    partial = (residual - before) / tf.maximum(tf.gather(rate_s, k[:, None], batch_dims=1)[:, 0],
                                               _TINY)
    index = tf.range(tf.shape(rate)[-1])[None, :]
    amount_s = tf.where(index < k[:, None], room_s,
                        tf.where(index == k[:, None], tf.minimum(partial[:, None], room_s), 0.0))
    return tf.gather(amount_s, tf.argsort(order, axis=-1), batch_dims=1)


def _threshold_solver(slope_fn, amount_fn):
    """Solves sum_i min(t slope_i, value_i) = residual for t, value_i = rate_i room_i.

    Each term grows linearly (slope_i) until t reaches its breakpoint
    value_i / slope_i, then stays; coordinates with zero rate never move.
    """
    def solve(rate, room, residual):
        slope, value = slope_fn(rate), rate * room
        moves = slope > 0
        breakpoint = tf.where(moves, value / tf.where(moves, slope, 1.0), tf.float64.max)
        order = tf.argsort(breakpoint, axis=-1)
        slope_s, value_s, point_s = (tf.gather(t, order, batch_dims=1)
                                     for t in (slope, value, breakpoint))
        saturated = tf.cumsum(value_s, axis=-1, exclusive=True)  # terms before k, all full
        growing = tf.cumsum(slope_s, axis=-1, reverse=True)  # slopes of terms k, k+1, ...
        after = growing - slope_s
        # The sum at breakpoint k (the constant tail where only saturated terms remain).
        at_break = saturated + value_s + tf.where(after > 0, point_s * after, 0.0)
        k = _first_reaching(at_break, residual)[:, None]
        t = ((residual - tf.gather(saturated, k, batch_dims=1)[:, 0])
             / tf.maximum(tf.gather(growing, k, batch_dims=1)[:, 0], _TINY))
        return tf.where(moves, amount_fn(tf.maximum(t, 0.0)[:, None], rate, room), 0.0)

    return solve


_SOLVERS = {
    "l1": _l1_amounts,
    # linf: every moving coordinate goes t (or to the box): slope |w_i|.
    "linf": _threshold_solver(lambda rate: rate, lambda t, rate, room: tf.minimum(t, room)),
    # l2: d_i = t |w_i| (or to the box): slope w_i^2.
    "l2": _threshold_solver(tf.square, lambda t, rate, room: tf.minimum(t * rate, room)),
}
