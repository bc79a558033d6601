"""Pentad rl: stable-baselines3 agents on gymnasium environments and the project's own games.

Importing the package registers ``pentad/ConnectFour-v0`` with gymnasium and the algorithms with
``ALGORITHMS``.

Example:
    >>> from pentad_rl import Predictor, resolve_agent_config, train
    >>> config = resolve_agent_config("ppo", "CartPole-v1", {"timesteps": 30_000})  # doctest: +SKIP
    >>> result = train(config, "runs/rl/example")  # doctest: +SKIP
    >>> actions = Predictor.from_run("runs/rl/example").predict(observations)  # doctest: +SKIP
"""

from importlib.metadata import version as _distribution_version

from pentad_rl import algorithms as algorithms
from pentad_rl import envs as envs
from pentad_rl.agents import build_agent, load_agent, save_agent
from pentad_rl.config import RLConfig
from pentad_rl.envs.make import make_env
from pentad_rl.evaluation import EvalResult, evaluate_agent
from pentad_rl.pipeline import TrainResult, train
from pentad_rl.predictor import Predictor
from pentad_rl.presets import resolve_agent_config
from pentad_rl.registry import ALGORITHMS, ENVIRONMENTS

__version__ = _distribution_version("pentad-rl")  # single-sourced: the repository's VERSION file

__all__ = [
    "ALGORITHMS",
    "ENVIRONMENTS",
    "EvalResult",
    "Predictor",
    "RLConfig",
    "TrainResult",
    "build_agent",
    "evaluate_agent",
    "load_agent",
    "make_env",
    "resolve_agent_config",
    "save_agent",
    "train",
]
