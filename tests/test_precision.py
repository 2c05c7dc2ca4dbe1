"""bf16 on a CPU without native bfloat16 is slower than fp32: a trainer asking for it is warned."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest

from v2p import precision
from v2p.cli import main as cli_main
from v2p.precision import cpu_flags, cpu_has_native_bf16, warn_if_bf16_is_emulated

ROOT = Path(__file__).resolve().parents[1]
AVX2_EPYC = frozenset({"fpu", "sse2", "avx", "avx2", "fma"})
SAPPHIRE_RAPIDS = AVX2_EPYC | {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}


def test_the_cpu_flags_are_read_from_cpuinfo_on_x86_and_arm64(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 fma\n\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 sve\n")
    assert cpu_flags(x86) == {"fpu", "avx2", "fma"}
    assert cpu_flags(arm) == {"fp", "asimd", "bf16", "sve"}
    assert cpu_has_native_bf16(cpu_flags(x86)) is False
    assert cpu_has_native_bf16(cpu_flags(arm)) is True
    assert cpu_has_native_bf16(SAPPHIRE_RAPIDS) is True


def test_unknown_flags_are_unknown_not_absent(tmp_path):
    no_flags = tmp_path / "cpuinfo"
    no_flags.write_text("processor\t: 0\n")
    assert cpu_flags(tmp_path / "missing") is None
    assert cpu_flags(no_flags) is None


@pytest.mark.parametrize("asked", ["bf16-mixed", "bf16-true"])
def test_bf16_on_a_cpu_without_it_is_warned_with_the_measurement(asked):
    trainer = L.Trainer(accelerator="cpu", precision=asked, logger=False)
    with pytest.warns(UserWarning, match="without native bfloat16") as caught:
        assert warn_if_bf16_is_emulated(trainer, AVX2_EPYC)
    assert f"--trainer.precision={asked}" in str(caught[0].message)
    assert "0.09x Stable-Baselines3" in str(caught[0].message)


def test_no_warning_with_native_bf16_or_without_bf16(recwarn):
    native = L.Trainer(accelerator="cpu", precision="bf16-mixed", logger=False)
    fp32 = L.Trainer(accelerator="cpu", logger=False)
    recwarn.clear()
    assert not warn_if_bf16_is_emulated(native, SAPPHIRE_RAPIDS)
    assert not warn_if_bf16_is_emulated(fp32, AVX2_EPYC)
    assert not [w for w in recwarn if "bfloat16" in str(w.message)]


def test_the_command_line_warns_on_such_a_cpu(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: AVX2_EPYC)
    config = str(ROOT / "configs" / "dishwashing_state.yaml")
    with pytest.warns(UserWarning, match="without native bfloat16"):
        cli_main(
            ["--config", config, "--trainer.logger=false", "--trainer.precision=bf16-mixed"],
            run=False,
        )
