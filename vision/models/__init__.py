"""Vision model families: LocalMamba, VL-Mamba, BTB3D."""
