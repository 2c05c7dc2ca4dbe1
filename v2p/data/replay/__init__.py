"""Replay memory for N environments stepped in lockstep by a batched (vector) env.

Samples come out as a typed :class:`ReplaySample` of CPU tensors (Lightning moves the batch to
the device), drawn uniformly or by priority. Storage is split from sampling, as DrQ-v2 and
TorchRL split them:

* :mod:`~v2p.data.replay.storage`: the per-transition fields and the state-vector layout
  (obs and next_obs stored per transition), and the one gather that makes tensors;
* :mod:`~v2p.data.replay.frames`: video (``frame_stack=T``, ``obs_shape=(T, C, H, W)``), each
  frame stored once in a per-env ring and stacks rebuilt at sample time; or, after
  :meth:`ReplayBuffer.store_frame_features`, what a fixed encoder makes of each frame (per-frame
  features, samples ``(B, T, dim)``) or of each clip (latents, samples ``(B, dim)``);
* :mod:`~v2p.data.replay.samplers`: uniform draws, and prioritised draws on a
  :mod:`~v2p.data.replay.sum_tree` (O(log N) per draw);
* :mod:`~v2p.data.replay.buffer`: :class:`ReplayBuffer`, which composes them;
* :mod:`~v2p.data.replay.checkpoint`: state-dict checks and the side file a big buffer goes to
  (:meth:`ReplayBuffer.save` / :meth:`ReplayBuffer.load`, an uncompressed ``.npz``) rather
  than being pickled into the Lightning checkpoint.
"""

from v2p.contracts import ReplayFeatures, ReplaySample
from v2p.data.replay.buffer import ReplayBuffer

__all__ = ["ReplayBuffer", "ReplayFeatures", "ReplaySample"]
