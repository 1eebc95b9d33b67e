"""End-to-end recipes: short scripts that read top to bottom and use only medidiff's public API.

Run one with ``python pipelines/<name>.py --out DIR [--data BRATS_DIR_OR_MANIFEST] [--set k=v] [--smoke]``;
see ``pipelines/README.md``.
"""
