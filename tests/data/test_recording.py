"""`v2p record`: shards rebuild the env's observations exactly; policies; errors; the CLI path."""

from __future__ import annotations

import json

import gymnasium as gym
import lightning
import numpy as np
import pytest
import torch

from v2p.__main__ import main as v2p_main
from v2p.data.rollout import make_env
from v2p.record import record

ENV_ID = "v2p/DishwashingVideo-v0"
SMALL = {"height": 16, "width": 16, "frames": 4, "steps": 6}


def _episode_seed(seed: int, index: int) -> int:
    """The reset seed the recording module documents for episode ``index``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _shards(out):
    manifest = json.loads((out / "manifest.json").read_text())
    return manifest, [dict(np.load(out / s["file"])) for s in manifest["shards"]]


def _episodes(shards):
    """(frames, actions, rewards, states) per episode, in recording order, via the offsets."""
    for shard in shards:
        ep, st, ob = shard["episode_starts"], shard["step_starts"], shard.get("obs_starts")
        for i in range(len(ep) - 1):
            yield (
                shard["frames"][ep[i] : ep[i + 1]],
                shard["actions"][st[i] : st[i + 1]],
                shard["rewards"][st[i] : st[i + 1]],
                None if ob is None else shard["states"][ob[i] : ob[i + 1]],
            )


def test_shards_rebuild_the_observations_of_a_direct_replay(tmp_path):
    out = tmp_path / "rec"
    record(str(out), ENV_ID, SMALL, episodes=3, episodes_per_shard=2, seed=7, progress=False)
    manifest, shards = _shards(out)

    assert manifest["format"] == "v2p-clips" and manifest["version"] == 1
    assert manifest["clip_len"] == 4 and manifest["frame_shape"] == [3, 16, 16]
    assert manifest["state_dim"] == 7 and manifest["source"] == "platform"
    assert [s["episodes"] for s in manifest["shards"]] == [2, 1]
    for entry, shard in zip(manifest["shards"], shards, strict=True):
        assert shard["frames"].dtype == np.uint8 and shard["actions"].dtype == np.float32
        assert shard["episode_starts"].dtype == np.int64
        assert entry["frames"] == len(shard["frames"]) == shard["episode_starts"][-1]
        assert entry["steps"] == len(shard["rewards"]) == shard["step_starts"][-1]
        assert shard["obs_starts"][-1] == len(shard["states"])

    # Replay every episode directly with the recorded actions: each observation must be the
    # clip frames[k : k + T], and every task state and reward must match.
    env = make_env(ENV_ID, SMALL)
    for index, (frames, actions, rewards, states) in enumerate(_episodes(shards)):
        assert len(actions) == SMALL["steps"] and len(frames) == 4 + SMALL["steps"]
        assert ((actions >= 0) & (actions <= 1)).all()
        obs, info = env.reset(seed=_episode_seed(7, index))
        np.testing.assert_array_equal(frames[0:4], obs)
        np.testing.assert_array_equal(states[0], info["task_state"])
        for k, action in enumerate(actions, start=1):
            obs, reward, _, truncated, info = env.step(action)
            np.testing.assert_array_equal(frames[k : k + 4], obs)
            np.testing.assert_array_equal(states[k], info["task_state"])
            assert rewards[k - 1] == np.float32(reward)
        assert truncated


def test_same_seed_same_recording_other_seed_differs(tmp_path):
    def actions(seed, name):
        record(str(tmp_path / name), ENV_ID, SMALL, episodes=2, seed=seed, progress=False)
        return np.concatenate([a for _, a, _, _ in _episodes(_shards(tmp_path / name)[1])])

    np.testing.assert_array_equal(actions(3, "a"), actions(3, "b"))
    assert not np.array_equal(actions(3, "a2"), actions(4, "c"))


def _tiny_sac_checkpoint(path, clip_shape):
    """A SACModule checkpoint written without a Trainer, as SACModule's own hooks write it."""
    from v2p.models.sac import SACModule

    model = SACModule(
        clip_shape,
        [0.0, 0.0],
        [1.0, 1.0],
        encoder_arch="simple2dcnn",
        latent_dim=8,
        encoder_channels=4,
        hidden_dim=16,
    )
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return model.eval()


def test_records_with_a_sac_checkpoint_policy(tmp_path):
    kwargs = {"height": 32, "width": 32, "frames": 3, "steps": 4}  # simple2dcnn needs >= 28 px
    model = _tiny_sac_checkpoint(tmp_path / "sac.ckpt", (3, 3, 32, 32))
    out = tmp_path / "rec"
    record(
        str(out),
        ENV_ID,
        kwargs,
        episodes=2,
        policy=str(tmp_path / "sac.ckpt"),
        deterministic=True,
        progress=False,
    )
    manifest, shards = _shards(out)
    assert manifest["policy"] == str(tmp_path / "sac.ckpt")
    for frames, actions, _, _ in _episodes(shards):
        clips = np.stack([frames[k : k + 3] for k in range(len(actions))])
        np.testing.assert_allclose(actions, model.act(clips, deterministic=True), atol=1e-6)


def test_checkpoint_errors_name_the_path(tmp_path):
    out = str(tmp_path / "rec")
    missing = tmp_path / "missing.ckpt"
    with pytest.raises(ValueError, match=r"missing\.ckpt. is neither .random., .optimal. nor"):
        record(out, ENV_ID, SMALL, episodes=1, policy=str(missing), progress=False)
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"cannot load SAC checkpoint .*corrupt.ckpt"):
        record(out, ENV_ID, SMALL, episodes=1, policy=str(corrupt), progress=False)
    _tiny_sac_checkpoint(tmp_path / "sac.ckpt", (3, 3, 32, 32))
    with pytest.raises(ValueError, match=r"sac.ckpt' was trained on observations \(3, 3, 32, 32"):
        record(out, ENV_ID, SMALL, episodes=1, policy=str(tmp_path / "sac.ckpt"), progress=False)
    assert not (tmp_path / "rec").exists()  # nothing written before the policy loaded


def test_env_errors(tmp_path):
    out = str(tmp_path / "rec")
    with pytest.raises(ValueError, match="cannot make env 'v2p/Nope-v0'"):
        record(out, "v2p/Nope-v0", episodes=1, progress=False)
    with pytest.raises(ValueError, match=r"requires uint8 clip observations \(T, C, H, W\)"):
        record(out, "v2p/Dishwashing-v0", episodes=1, progress=False)


def test_refuses_a_non_empty_folder_unless_overwrite(tmp_path):
    out = tmp_path / "rec"
    record(str(out), ENV_ID, SMALL, episodes=3, episodes_per_shard=1, progress=False)
    with pytest.raises(ValueError, match=r"out folder .*rec' is not empty"):
        record(str(out), ENV_ID, SMALL, episodes=1, progress=False)
    (out / "notes.txt").write_text("kept")
    record(str(out), ENV_ID, SMALL, episodes=1, overwrite=True, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json",
        "notes.txt",
        "shard_00000.npz",
    ]
    assert json.loads((out / "manifest.json").read_text())["shards"][0]["episodes"] == 1


class _TestClipEnv(gym.Env):
    """Clips of random frames: sliding histories or not, without task_state."""

    def __init__(self, sliding: bool = True) -> None:
        self.sliding = sliding
        self.observation_space = gym.spaces.Box(0, 255, (2, 1, 4, 4), np.uint8)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        self._clip = self.np_random.integers(0, 256, (2, 1, 4, 4), dtype=np.uint8)
        return self._clip.copy(), {}

    def step(self, action):
        self._t += 1
        new = self.np_random.integers(0, 256, (2, 1, 4, 4), dtype=np.uint8)
        self._clip = np.concatenate([self._clip[1:], new[:1]]) if self.sliding else new
        return self._clip.copy(), 0.0, False, self._t >= 5, {}


@pytest.fixture(scope="module")
def test_env_id():
    env_id = "v2p-test/ClipEnv-v0"
    if env_id not in gym.registry:
        gym.register(id=env_id, entry_point=_TestClipEnv, disable_env_checker=True)
    return env_id


def test_env_without_task_state_records_no_states(tmp_path, test_env_id):
    record(str(tmp_path / "rec"), test_env_id, episodes=2, progress=False)
    manifest, shards = _shards(tmp_path / "rec")
    assert manifest["state_dim"] is None and manifest["clip_len"] == 2
    assert "states" not in shards[0] and "obs_starts" not in shards[0]
    assert shards[0]["actions"].shape == (10, 1)


def test_clips_that_are_not_frame_histories_are_refused(tmp_path, test_env_id):
    with pytest.raises(ValueError, match="not the previous one shifted by one frame"):
        record(str(tmp_path / "rec"), test_env_id, {"sliding": False}, episodes=1, progress=False)


def test_v2p_record_command_line(tmp_path, capsys):
    out = tmp_path / "rec"
    argv = ["record", "--out", str(out), "--episodes", "2", "--source", "site-b"]
    argv += ["--env_kwargs", json.dumps(SMALL), "--progress", "false"]
    assert v2p_main(argv) == 0
    manifest, _ = _shards(out)
    assert manifest["source"] == "site-b" and manifest["env_kwargs"] == SMALL
    assert "wrote 1 shard(s)" in capsys.readouterr().out
    assert v2p_main(argv) == 2  # the folder is no longer empty
    assert "is not empty" in capsys.readouterr().err
