"""Predictable scaling: the ladder of small runs, the law fitted to it, the prediction."""

#: scaling_fit's output file: the law, the size chosen for pretrain's budget, the prediction (pretrain reads the
#: choice, the report all of it).
LAW_FILE = "law.json"
#: The decision alone, what pretrain reads: the shape and steps with model.size from_ladder, else the same
#: bytes whatever the ladder says, so a changed ladder re-runs a fixed-size pretrain's nothing.
CHOICE_FILE = "choice.json"
