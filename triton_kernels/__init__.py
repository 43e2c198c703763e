"""Triton kernels of fastnoise (installed as `fastnoise.triton_kernels`).

Imported lazily by fastnoise.ops._dispatch. On CPU tensors they run in Triton's interpreter, which
requires TRITON_INTERPRET=1 in the environment before this package is imported.
"""
