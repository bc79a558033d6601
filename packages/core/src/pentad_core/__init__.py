"""Pentad core: what every Pentad domain needs, and nothing domain-specific.

Modules (import what you use; importing ``pentad_core`` itself is cheap):

- ``pentad_core.registry``: :class:`Registry` of models, losses, datasets.
- ``pentad_core.config``: YAML -> typed dataclass -> command-line overrides.
- ``pentad_core.devices``: hardware description, accelerator/precision selection, seeding, threads.
- ``pentad_core.training``: :class:`TrainerConfig`, :func:`build_trainer`, :func:`fit`, :func:`test`,
  :class:`PentadModule` (the base of every domain's LightningModule).
- ``pentad_core.runs``: run folders (config.yaml, metrics.json, checkpoints/, logs/, plots/).
- ``pentad_core.checkpoint``: atomic saves, ``weights_only`` loads, exact resume.
- ``pentad_core.cli``: the app scaffolding (verbs, common options, error policy).
- ``pentad_core.data``: dataset folders, verified downloads, safe extraction.
- ``pentad_core.export``: ONNX export and onnxruntime parity check.
- ``pentad_core.bench``: timing and table helpers for the apps' benchmarks.
- ``pentad_core.parity``: the trainer-vs-hand-written-loop experiment (``python -m pentad_core.bench``).
- ``pentad_core.plotting``: PNG figures without a display.
- ``pentad_core.errors``: :class:`PentadError` and friends (exit code 2 in the CLI).
"""

from importlib.metadata import version as _distribution_version

__version__ = _distribution_version("pentad-core")  # single-sourced: the repository's VERSION file
