"""The `vision` console script's commands, one module per family: plain typed functions from which jsonargparse
builds the flags.

These modules import only configs at the top (no timm, lightning or matplotlib), so that ``vision --help`` is
quick; each command imports its family when it runs.
"""
