"""Release parity: the published DAFormer and DyTox code beside our suite, same images and recipe.

Modules: pack (Tiny-ImageNet-100 -> CIFAR-100's pickle layout), recipe (the scaled-down recipe and
the methods), release (runs a release through wrapper.py), wrapper (the CPU runtime patches, run in
the release's venv), ours (runs suite/run.py), proc (one logged subprocess), store (one record per
run, resumable), steptime (the training-step timing), meta (machine, sources), report (README.md).
"""
