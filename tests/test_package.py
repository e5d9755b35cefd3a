"""The package as a user installs it: a wheel that carries every config, and a plain (non-editable) install into a
fresh virtual environment that trains, evaluates and chats from any working directory."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from quantum_ft.utils.config import conf_dir

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    (found,) = out.glob("quantum_ft-*.whl")
    return found


def test_the_wheel_carries_every_config(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {f"quantum_ft/conf/{p.relative_to(conf_dir())}" for p in conf_dir().rglob("*.yaml")}
    assert len(configs) > 80 and configs <= names, sorted(configs - names)[:5]
    assert "quantum_ft/resources/mmlu.zip" in names and "hydra_plugins/quantum_ft_launchers/__init__.py" in names


def test_a_plain_install_runs_from_another_directory(wheel: Path, tmp_path: Path) -> None:
    """A fresh venv holding the wheel (not an editable install); the dependencies come from this environment's
    site-packages on its path, so the test installs nothing from the network."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python3*/site-packages"))
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)  # what pip install --no-deps does for a pure-Python wheel
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # a path, not the editable finder
    python, work = str(venv / "bin" / "python"), tmp_path / "elsewhere"
    work.mkdir()

    def run(*args: str) -> str:
        done = subprocess.run([python, *args], cwd=work, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return done.stdout + done.stderr

    where = run("-c", "import quantum_ft; print(quantum_ft.__file__)")
    assert str(site) in where, where
    tiny = ["model=tiny", "callbacks.sample_generations.max_new_tokens=4", "trainer.enable_progress_bar=false"]
    out = run("-m", "quantum_ft.train", "debug=smoke", *tiny, "hydra.run.dir=run")
    assert "val/loss before training" in out and (work / "run/artifact/quantum_ft_config.yaml").is_file()
    run("-m", "quantum_ft.eval", "model=tiny", "checkpoint=run", "eval.max_samples=1", "eval.subjects=[anatomy]")
    run("-m", "quantum_ft.chat", "run", "--prompt", "Hi", "--max-new-tokens", "3")
    run("-m", "quantum_ft.export", "run", "--out", "merged")
    assert (work / "merged/config.json").is_file()
