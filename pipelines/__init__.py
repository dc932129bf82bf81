"""One thin script per DVC stage, run as `python -m pipelines.<stage>` from the repo root.

Running them as modules keeps `pipelines/` off the front of sys.path, where `tokenize.py` would
shadow the standard library module of the same name.
"""
