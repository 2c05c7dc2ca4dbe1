"""ClipDataModule: pairs, split, states, augmentation, video files, errors, a Lightning fit."""

from __future__ import annotations

import math
from types import SimpleNamespace

import av
import lightning as L
import numpy as np
import pytest
import torch

from v2p.data.clips import ClipBatch, ClipDataModule, load_episodes, random_shift
from v2p.data.recording import EpisodeArrays, ShardWriter, shard_arrays
from v2p.record import record

T_REC = 3  # clip length of the synthetic recordings
SIZE = 8


def _synthetic_episode(episode: int, steps: int, state_dim: int | None = 2) -> EpisodeArrays:
    """Frames that carry their own identity: pixel (0, 0, 0) = episode, (0, 0, 1) = frame
    index; the state of observation k is (episode, k), as is the action taken at it, and its
    reward is 100 * episode + k."""
    frames = np.full((T_REC + steps, 3, SIZE, SIZE), 100, dtype=np.uint8)
    frames[:, 0, 0, 0] = episode
    frames[:, 0, 0, 1] = np.arange(len(frames))
    states = None
    if state_dim is not None:
        states = np.zeros((steps + 1, state_dim), np.float32)
        states[:, 0], states[:, 1] = episode, np.arange(steps + 1)
    actions = np.stack([np.full(steps, episode), np.arange(steps)], axis=1).astype(np.float32)
    rewards = (100 * episode + np.arange(steps)).astype(np.float32)
    return EpisodeArrays(frames, actions, rewards, states)


def _write_recording(folder, lengths, first_episode=0, per_shard=3, state_dim=2):
    writer = ShardWriter(
        folder,
        {"clip_len": T_REC, "frame_shape": [3, SIZE, SIZE], "state_dim": state_dim, "source": "s"},
        episodes_per_shard=per_shard,
        compress=False,
    )
    folder.mkdir(parents=True)
    for i, steps in enumerate(lengths):
        writer.add(_synthetic_episode(first_episode + i, steps, state_dim))
    writer.flush()
    return folder


@pytest.fixture
def synthetic(tmp_path):
    """Ten episodes of 20..29 steps in four shards (the episode's global index is its id)."""
    return _write_recording(tmp_path / "rec", [20 + i for i in range(10)])


def _dm(paths, **kwargs):
    defaults = dict(clip_len=4, frame_size=SIZE, batch_size=16, max_gap=3, clips_per_epoch=80)
    dm = ClipDataModule([str(p) for p in paths], **{**defaults, **kwargs})
    dm.setup("fit")
    return dm


def _check_pairs(batch: ClipBatch, clip_len: int, max_gap: int) -> None:
    """Every pair: one episode, consecutive frames, positive 1..max_gap frames later, and the
    state of the anchor's newest observation."""
    anchor_ep, anchor_idx = batch.anchor[:, :, 0, 0, 0], batch.anchor[:, :, 0, 0, 1].long()
    pos_ep, pos_idx = batch.positive[:, :, 0, 0, 0], batch.positive[:, :, 0, 0, 1].long()
    assert (anchor_ep == batch.episode[:, None]).all() and (pos_ep == batch.episode[:, None]).all()
    steps = torch.arange(clip_len)
    assert (anchor_idx == anchor_idx[:, :1] + steps).all()
    assert (pos_idx == pos_idx[:, :1] + steps).all()
    gap = pos_idx[:, 0] - anchor_idx[:, 0]
    assert ((gap >= 1) & (gap <= max_gap)).all(), gap
    newest = anchor_idx[:, -1]
    assert (newest >= T_REC - 1).all()  # the anchor ends on an observation
    torch.testing.assert_close(batch.state[:, 0], batch.episode.float())
    torch.testing.assert_close(batch.state[:, 1], (newest - (T_REC - 1)).float())


def test_shapes_known_at_init_and_frames_resized(synthetic):
    dm = ClipDataModule([str(synthetic)], clip_len=5, frame_size=4)
    assert dm.observation_shape == (5, 3, 4, 4) and dm.state_dim == 2
    assert dm._store is None  # nothing loaded before setup
    episodes = load_episodes([str(synthetic)], frame_size=4)
    assert len(episodes) == 10 and episodes[0].frames.shape == (T_REC + 20, 3, 4, 4)
    assert episodes[3].states.shape == (24, 2) and episodes[3].clip_len == T_REC
    assert episodes[3].episode_id == "rec/shard_00001.npz#0" and episodes[3].source == "s"


def test_training_pairs_stay_in_their_episode(synthetic):
    dm = _dm([synthetic], clip_len=4, max_gap=3)
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(batches) == len(loader) == math.ceil(80 / 16)
    train = set(dm.train_episodes.tolist())
    for batch in batches:
        assert batch.anchor.dtype == torch.uint8 and batch.anchor.shape == (16, 4, 3, SIZE, SIZE)
        assert batch.state.dtype == torch.float32 and batch.episode.dtype == torch.int64
        assert set(batch.episode.tolist()) <= train
        _check_pairs(batch, 4, 3)
    gaps = torch.cat([b.positive[:, 0, 0, 0, 1] - b.anchor[:, 0, 0, 0, 1] for b in batches])
    assert set(gaps.tolist()) == {1, 2, 3}


def test_anchors_carry_the_action_and_reward_of_their_newest_observation(synthetic):
    dm = _dm([synthetic], batch_size=64)
    assert dm.action_dim == 2
    store = dm._store
    for batch in [next(iter(dm.train_dataloader())), *dm.val_dataloader()]:
        assert batch.action.shape == (len(batch.episode), 2)
        episode = batch.anchor[:, -1, 0, 0, 0].long()
        observation = batch.anchor[:, -1, 0, 0, 1].long() - (T_REC - 1)  # k of the newest frame
        steps = torch.tensor([20 + int(e) for e in episode])
        acted = observation < steps  # the episode's last observation has no action
        torch.testing.assert_close(batch.action[acted, 0], episode[acted].float())
        torch.testing.assert_close(batch.action[acted, 1], observation[acted].float())
        torch.testing.assert_close(
            batch.reward[acted], (100 * episode[acted] + observation[acted]).float()
        )
        assert torch.isnan(batch.action[~acted]).all() and torch.isnan(batch.reward[~acted]).all()
    # Every episode's last observation is stored without an action.
    assert np.isnan(store.frame_reward).sum() >= 10


def test_clips_longer_than_the_recorded_ones(synthetic):
    # clip_len 6 > T_REC: anchors may start at frame 0 (their newest frame is observation >= 3).
    dm = _dm([synthetic], clip_len=6, max_gap=2, clips_per_epoch=200)
    batches = list(dm.train_dataloader())
    for batch in batches:
        _check_pairs(batch, 6, 2)
    assert min(b.anchor[:, 0, 0, 0, 1].min() for b in batches) == 0


def test_validation_is_fixed_and_from_val_episodes(synthetic):
    dm = _dm([synthetic], clip_len=2, max_gap=4, val_fraction=0.3)
    val = set(dm.val_episodes.tolist())
    first, second = list(dm.val_dataloader()), list(dm.val_dataloader())
    assert first and len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a.anchor, b.anchor)
        torch.testing.assert_close(a.positive, b.positive)
        assert set(a.episode.tolist()) <= val
        _check_pairs(a, 2, 4)
    assert [len(b) for b in dm.test_dataloader()] == [len(b) for b in first]


def test_split_is_deterministic_disjoint_and_order_free(synthetic, tmp_path):
    dm = _dm([synthetic], val_fraction=0.3, seed=5)
    again = _dm([synthetic], val_fraction=0.3, seed=5)
    np.testing.assert_array_equal(dm.val_episodes, again.val_episodes)
    assert not set(dm.train_episodes) & set(dm.val_episodes)
    assert sorted([*dm.train_episodes, *dm.val_episodes]) == list(range(10))
    assert len(dm.val_episodes) >= 1

    def val_ids(module):
        return {module.episode_ids[i] for i in module.val_episodes}

    # Shards given one by one, in another order, hold the same episodes: the same split.
    shards = sorted(synthetic.glob("shard_*.npz"), reverse=True)
    assert val_ids(_dm(shards, val_fraction=0.3, seed=5)) == val_ids(dm)
    # Another seed splits differently (checked over several seeds: any one could coincide).
    others = [val_ids(_dm([synthetic], val_fraction=0.3, seed=s)) for s in range(6, 10)]
    assert any(ids != val_ids(dm) for ids in others)


def test_training_draws_are_reproducible_per_epoch(synthetic):
    def first_batch(loader):
        return next(iter(loader))

    dm = _dm([synthetic], seed=1)
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)
    epoch0 = first_batch(loader)
    loader.sampler.set_epoch(1)
    epoch1 = first_batch(loader)
    assert not torch.equal(epoch0.anchor, epoch1.anchor)

    other = _dm([synthetic], seed=1, num_workers=1).train_dataloader()
    other.sampler.set_epoch(0)
    from_worker = first_batch(other)
    torch.testing.assert_close(epoch0.anchor, from_worker.anchor)
    torch.testing.assert_close(epoch0.episode, from_worker.episode)


def _find_shift(original: torch.Tensor, shifted: torch.Tensor, pad: int):
    """The (dy, dx) with ``shifted`` = ``original`` replicate-padded by ``pad`` and cropped at
    (pad + dy, pad + dx), the DrQ definition; None when no offset gives it."""
    h, w = original.shape[-2:]
    padded = torch.nn.functional.pad(original.float(), (pad, pad, pad, pad), mode="replicate")
    for dy in range(-pad, pad + 1):
        for dx in range(-pad, pad + 1):
            crop = padded[..., pad + dy : pad + dy + h, pad + dx : pad + dx + w]
            if torch.equal(crop.to(original.dtype), shifted):
                return dy, dx
    return None


def test_random_shift_is_a_replicate_padded_translation():
    torch.manual_seed(0)
    clips = torch.randint(0, 256, (12, 3, 2, 9, 9), dtype=torch.uint8)
    shifted = random_shift(clips, 2)
    assert shifted.dtype == torch.uint8 and shifted.shape == clips.shape
    found = [_find_shift(c, s, 2) for c, s in zip(clips, shifted, strict=True)]
    assert None not in found  # each clip moved as a whole, by at most 2 pixels
    assert any(dy for dy, _ in found) and any(dx for _, dx in found)  # both axes move
    assert random_shift(clips, 0) is clips


def test_augmentation_in_training_only(synthetic):
    dm = _dm([synthetic], shift_pad=2)
    batch = next(iter(dm.train_dataloader()))
    # Make the frames' content non-uniform so any shift shows.
    batch = batch._replace(
        anchor=torch.randint(0, 256, batch.anchor.shape, dtype=torch.uint8),
        positive=torch.randint(0, 256, batch.positive.shape, dtype=torch.uint8),
    )
    dm.trainer = SimpleNamespace(training=False)
    assert dm.on_after_batch_transfer(batch, 0) is batch
    dm.trainer = SimpleNamespace(training=True)
    torch.manual_seed(0)
    out = dm.on_after_batch_transfer(batch, 0)
    assert out.anchor.dtype == torch.uint8 and out.anchor.shape == batch.anchor.shape
    assert not torch.equal(out.anchor, batch.anchor)
    assert not torch.equal(out.positive, batch.positive)
    anchor_shifts = [_find_shift(a, b, 2) for a, b in zip(batch.anchor, out.anchor, strict=True)]
    pos_shifts = [_find_shift(a, b, 2) for a, b in zip(batch.positive, out.positive, strict=True)]
    assert None not in anchor_shifts and None not in pos_shifts
    assert anchor_shifts != pos_shifts  # independent shifts
    torch.testing.assert_close(out.state, batch.state)


def _write_video(path, frames: np.ndarray, fps: int = 10) -> None:
    """frames uint8 (N, H, W, 3) -> an MPEG-4 file (lossy)."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "1"}  # best quality: small coding error
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def _ramp_video(path, n_frames, height=24, width=32):
    """Frame i is a flat grey of 10 * i; the non-square frames are center-cropped."""
    level = (10 * np.arange(n_frames)).astype(np.uint8)
    frames = np.broadcast_to(level[:, None, None, None], (n_frames, height, width, 3)).copy()
    _write_video(path, frames)
    return level


def test_reads_folders_of_videos_and_mixes_them_with_recordings(synthetic, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    level = _ramp_video(videos / "a.mp4", 14)
    _ramp_video(videos / "b.MOV", 12)
    (videos / "notes.txt").write_text("ignored")

    dm = ClipDataModule([str(videos)], clip_len=4, frame_size=16, max_gap=2, batch_size=8)
    assert dm.observation_shape == (4, 3, 16, 16) and dm.state_dim is None
    assert dm.action_dim is None  # no actions in video files
    episodes = load_episodes([str(videos)], frame_size=16)
    assert [e.episode_id for e in episodes] == ["videos/a.mp4", "videos/b.MOV"]
    assert episodes[0].frames.shape == (14, 3, 16, 16) and episodes[0].states is None
    np.testing.assert_allclose(episodes[0].frames.mean(axis=(1, 2, 3)), level, atol=3)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.anchor.shape == (8, 4, 3, 16, 16) and batch.state.shape == (8, 0)
    assert batch.action.shape == (8, 0) and batch.reward.isnan().all()
    # Later frames are brighter: the positive starts after the anchor.
    assert (batch.positive.float().mean(dim=(1, 2, 3, 4)) > batch.anchor.float().mean()).any()

    mixed = _dm([synthetic, videos / "a.mp4"], frame_size=SIZE, val_fraction=0.0)
    assert mixed.state_dim == 2
    batch = next(iter(mixed.train_dataloader()))
    from_video = batch.episode == 10
    assert from_video.any() and (~from_video).any()
    assert batch.state[from_video].isnan().all() and batch.state[~from_video].isfinite().all()
    assert mixed.action_dim == 2 and batch.reward[from_video].isnan().all()


def test_corrupt_and_malformed_files_fail_naming_the_file(synthetic, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is no zip archive")
    with pytest.raises(ValueError, match=r"cannot read shard .*bad\.npz"):
        ClipDataModule([str(bad)])

    arrays = shard_arrays([_synthetic_episode(0, 10)])
    np.savez(tmp_path / "float.npz", **{**arrays, "frames": arrays["frames"].astype(np.float32)})
    with pytest.raises(ValueError, match=r"float\.npz' has frames float32 .*expected uint8"):
        ClipDataModule([str(tmp_path / "float.npz")])

    starts = arrays["episode_starts"].copy()
    starts[-1] += 1
    np.savez(tmp_path / "offsets.npz", **{**arrays, "episode_starts": starts})
    with pytest.raises(ValueError, match=r"offsets\.npz': episode_starts must be"):
        _dm([tmp_path / "offsets.npz"])

    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "broken.mp4").write_bytes(b"\x00\x01 definitely not a video" * 20)
    with pytest.raises(ValueError, match=r"broken\.mp4"):
        ClipDataModule([str(videos)])

    with pytest.raises(ValueError, match=r"path .*nowhere' is not a recording folder"):
        ClipDataModule([str(tmp_path / "offsets.npz"), str(tmp_path / "nowhere")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty. has no manifest\.json and no video files"):
        ClipDataModule([str(tmp_path / "empty")])
    with pytest.raises(ValueError, match="given twice"):
        ClipDataModule([str(synthetic), str(synthetic / "shard_00000.npz")])


def test_short_episodes_and_small_frames_are_refused(tmp_path):
    short = _write_recording(tmp_path / "short", [20, 3])
    # T_REC 3 + 3 steps = 6 frames; clip_len 4 and max_gap 3 need 4 + 3 = 7.
    with pytest.raises(ValueError, match=r"episode 1 of .*shard_00000\.npz' has 6 frames"):
        _dm([short], clip_len=4, max_gap=3)
    _dm([short], clip_len=3, max_gap=3)  # 6 frames are enough for clips of 3
    with pytest.raises(ValueError, match=r"8x8 frames, smaller than frame_size 16"):
        _dm([short], frame_size=16, clip_len=2)


def test_sources_must_agree_on_channels(tmp_path):
    rgb = _write_recording(tmp_path / "rgb", [10])
    arrays = shard_arrays([_synthetic_episode(0, 10)])
    np.savez(tmp_path / "grey.npz", **{**arrays, "frames": arrays["frames"][:, :1]})
    with pytest.raises(ValueError, match="sources disagree on channels"):
        ClipDataModule([str(rgb), str(tmp_path / "grey.npz")])


class _PairConsumer(L.LightningModule):
    """Records what training and validation steps receive."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[tuple[str, ClipBatch]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(("train", batch))
        return self.weight * batch.anchor.float().mean()

    def validation_step(self, batch, batch_idx):
        self.seen.append(("val", batch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_lightning_fit_on_a_real_recording(tmp_path):
    rec = tmp_path / "rec"
    kwargs = {"height": 32, "width": 32, "frames": 4, "steps": 12}
    record(str(rec), "v2p/DishwashingVideo-v0", kwargs, episodes=4, progress=False)
    dm = ClipDataModule([str(rec)], clip_len=4, frame_size=16, batch_size=4, clips_per_epoch=8)
    assert dm.observation_shape == (4, 3, 16, 16) and dm.state_dim == 7
    model = _PairConsumer()
    trainer = L.Trainer(
        max_epochs=2,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=dm)
    train = [b for stage, b in model.seen if stage == "train"]
    assert len(train) == 4 and any(stage == "val" for stage, _ in model.seen)
    assert all(b.anchor.dtype == torch.uint8 and b.state.isfinite().all() for b in train)
    assert not torch.equal(train[0].anchor, train[2].anchor)  # epochs 0 and 1 differ
