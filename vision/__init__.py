"""Vision models: LocalMamba, VL-Mamba, BTB3D volumetric tokens."""
