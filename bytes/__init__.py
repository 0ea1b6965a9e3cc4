"""Byte-level language models: MEGABYTE and MBLM. Import submodules (``from bytes.models import ...``); never
``import bytes`` inside the project, which would shadow the builtin."""
