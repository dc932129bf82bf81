"""One thin script per DVC stage, run as `python -m pipelines.<stage>` from the repo root.

Running them as modules keeps `pipelines/` off the front of sys.path, where `tokenize.py` would
shadow the standard library module of the same name. A script whose library pulls in torch, Lightning
or Great Expectations imports it inside its work function: bad params or a missing input are reported
in about a second, before seconds of imports.
"""
