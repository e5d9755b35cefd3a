"""Submitit launchers that freeze code and config at submission and refuse a mismatched job geometry up front.

hydra-submitit-launcher re-composes each job's YAML and imports the code when the job *starts*, so edits made while
a sweep waits in the queue leak into it. Here every job's config is composed when the sweep is submitted, from the
configs of a copy of the package taken then (quantum_ft/conf is package data), and the jobs import quantum_ft from
that copy (first on PYTHONPATH). The copy lives in `<sweep dir>/.snapshot/`. A requeued job (preemption, time
limit) runs the same frozen config again, so it lands in the same output directory and resumes from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.config_search_path import SearchPathElement
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, run_job, setup_globals
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from omegaconf import DictConfig, open_dict

import quantum_ft
from quantum_ft.cluster.geometry import check_geometry
from quantum_ft.utils.config import CONF_ENV, CONF_PACKAGE, ConfigError, conf_dir
from quantum_ft.utils.io import atomic_directory

log = logging.getLogger(__name__)
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def snapshot_code(destination: Path) -> Path:
    """Copy the quantum_ft package (its conf/ included) and its Hydra launcher plugin into `destination` (once per
    sweep); returns it.

    Also records the git commit and uncommitted changes of the checkout, when there is one, in `git.txt`.
    """
    if (destination / "src" / "quantum_ft").is_dir():
        return destination
    package = Path(quantum_ft.__file__).resolve().parent
    plugins = Path(importlib.import_module("hydra_plugins.quantum_ft_launchers").__file__).resolve().parent
    with atomic_directory(destination, replace=False) as tmp:
        shutil.copytree(package, tmp / "src" / "quantum_ft", ignore=_IGNORE)
        shutil.copytree(plugins, tmp / "src" / "hydra_plugins" / plugins.name, ignore=_IGNORE)
        if conf_dir() != package / "conf":  # $QUANTUM_FT_CONF_DIR: the configs in use are not the package's own
            shutil.rmtree(tmp / "src" / "quantum_ft" / "conf")
            shutil.copytree(conf_dir(), tmp / "src" / "quantum_ft" / "conf", ignore=_IGNORE)
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            git = ["git", "-C", str(package)]
            commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout
            status = subprocess.run([*git, "status", "--short"], capture_output=True, text=True, check=True).stdout
            (tmp / "git.txt").write_text(f"commit {commit.strip()}\nuncommitted changes:\n{status}")
    return destination


def snapshot_conf(snapshot: Path) -> Path:
    return snapshot / "src" / "quantum_ft" / "conf"


@contextlib.contextmanager
def frozen_environment(snapshot: Path) -> Iterator[None]:
    """Jobs submitted inside this block import quantum_ft and read conf/ from the snapshot.

    sbatch exports the submitting environment by default and submitit's local executor inherits it.
    """
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", CONF_ENV)}
    paths = [str(snapshot / "src"), *filter(None, (saved["PYTHONPATH"] or "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)
    os.environ[CONF_ENV] = str(snapshot_conf(snapshot))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _loader_on(conf: Path, loader: ConfigLoaderImpl) -> ConfigLoaderImpl:
    """A config loader like `loader` whose primary config directory is the snapshot's conf/."""
    search_path = copy.deepcopy(loader.config_search_path)
    live = {str(conf_dir()), f"file://{conf_dir()}", CONF_PACKAGE}
    elements = search_path.get_path()
    for i, element in enumerate(elements):
        if element.path in live:
            elements[i] = SearchPathElement(element.provider, str(conf))
    return ConfigLoaderImpl(config_search_path=search_path)


class FrozenSubmititLauncher(BaseSubmititLauncher):
    """Compose, check and freeze every job before submitting any. Hydra only accepts launchers defined under the
    `hydra_plugins` package: the local and SLURM ones are in hydra_plugins/quantum_ft_launchers."""

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.frozen_configs: dict[int, DictConfig] = {}

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        first_batch = not (sweep_dir / ".snapshot").exists()  # an Optuna study launches several batches
        snapshot = snapshot_code(sweep_dir / ".snapshot")
        loader = _loader_on(snapshot_conf(snapshot), self.hydra_context.config_loader)
        jobs = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            cfg = loader.load_sweep_config(self.config, list(overrides))
            with open_dict(cfg):
                cfg.hydra.sweep.dir = str(sweep_dir)  # resolved now: a requeued job must find the same directory
            self.frozen_configs[idx] = cfg
            jobs.append((list(overrides), cfg))
        try:
            check_geometry(jobs, self.params)
        except ConfigError:
            if first_batch:  # nothing was submitted: leave no half-made sweep behind
                shutil.rmtree(snapshot)
            raise
        log.info("Code and config frozen for these jobs in %s", snapshot)
        with frozen_environment(snapshot):
            return super().launch(job_overrides, initial_job_idx)

    def __call__(
        self,
        sweep_overrides: list[str],
        job_dir_key: str,
        job_num: int,
        job_id: str,
        singleton_state: dict[type, Singleton],
    ) -> JobReturn:
        """Runs in the job: the config frozen at submission, not one re-composed from today's YAML."""
        import submitit

        assert self.hydra_context is not None and self.task_function is not None
        Singleton.set_state(singleton_state)
        setup_globals()
        sweep_config = copy.deepcopy(self.frozen_configs[job_num])
        with open_dict(sweep_config.hydra.job):
            sweep_config.hydra.job.id = submitit.JobEnvironment().job_id
            sweep_config.hydra.job.num = job_num
        return run_job(
            hydra_context=self.hydra_context,
            task_function=self.task_function,
            config=sweep_config,
            job_dir_key=job_dir_key,
            job_subdir_key="hydra.sweep.subdir",
        )
