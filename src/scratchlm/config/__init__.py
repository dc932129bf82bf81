"""One pydantic model per ``params.yaml`` section.

Every model forbids unknown keys and checks ranges, so a typo or an impossible value stops a
stage before any work starts, with a one-line message that names the key
(``clean.min_words: must be ≥ 0``). The library never reads ``params.yaml`` itself: the
pipeline scripts load a section and hand the validated model to library functions.

By area, one module each (data, training, evaluation, scaling, report, runtime), so a stage depends on the
sections it reads and not on the others: this package file imports nothing. `loader` reads params.yaml
and validates a section by name, through the stage registry (`scratchlm.stages`).
"""
