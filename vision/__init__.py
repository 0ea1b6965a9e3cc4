"""Vision models: LocalMamba, VL-Mamba, BTB3D volumetric tokens.

Importing the package registers the LocalMamba models with timm (`vision.timm_models`), so that
``timm.create_model("localvim_tiny")`` works after ``import vision``.
"""

from vision import timm_models  # noqa: F401  (registers the LocalMamba models with timm)
