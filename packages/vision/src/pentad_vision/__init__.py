"""Pentad vision: image classification on pentad-core.

Public API (importing ``pentad_vision.models`` / ``pentad_vision.data`` registers the networks and datasets):

* ``pentad_vision.config.VisionConfig``: the typed config a run records in ``config.yaml``
* ``pentad_vision.pipeline``: ``load_data``, ``build_module``, ``train``, ``evaluate``, ``export_onnx``, ...
* ``pentad_vision.predictor.Predictor.from_run(path)``: top-k class probabilities from a trained run
* ``pentad_vision.data.load_dataset(name, root, **options)`` -> ``ImageData`` (uint8 splits, classes, stats)
* ``pentad_vision.models.build_model(name, model_options, *, num_classes, in_channels, image_size)``
* ``pentad_vision.module.ImageClassifier`` / ``VisionDataModule`` (Lightning)
* ``pentad_vision.evaluation``, ``attacks``, ``gradcam``, ``compress``, ``metrics``, ``transforms``
* ``pentad_vision.cli.main`` (``apps/vision``)
"""

from importlib.metadata import version as _distribution_version

__version__ = _distribution_version("pentad-vision")  # single-sourced: the repository's VERSION file
