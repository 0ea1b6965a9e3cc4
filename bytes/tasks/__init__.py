"""Lightning training of the byte models (the only part of `bytes` that imports lightning)."""
