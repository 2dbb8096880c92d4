"""KAE's defaults: the plan's options (``sidkit kae-plan`` and the plan TOML) and bind-slot's
routing cap. Plain constants, so the CLI's help texts can show them without loading KAE."""

#: defaults of a KAE plan (``sidkit kae-plan`` and the plan TOML)
PLAN_DEFAULTS = {"groups": 6, "mu_bal": 0.1, "k_max": 16384, "refine_passes": 3, "eps": 0.01, "f_min": 5,
                 "reserved_ratio": 0.05, "reserved_min": 32, "sample": 2_000_000, "route_min_precision": 0.5,
                 "route_neighbours": 10}

#: bind-slot's default cap on the share of attribute-less fit items routed to a new slot
MAX_ROUTE_SHARE = 0.01
