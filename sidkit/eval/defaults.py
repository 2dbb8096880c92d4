"""``sidkit eval``'s training defaults. Plain constants, so the CLI's help texts can show them
without loading the evaluation stack."""

#: maximum training epochs of the downstream models of ``sidkit eval``
EVAL_EPOCHS = 30
TIGER_EPOCHS = 8  # sidkit eval --recommender tiger: epochs of its one-cycle schedule
