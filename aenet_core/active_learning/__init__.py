"""Active learning: explore with a committee, select uncertain and diverse frames, label them, retrain.

The workflow runs each step as its own job (workflow/rules/active_learning.smk); these modules are
what those jobs call: ``explore`` (committee molecular dynamics), ``select`` (trust window and
farthest-point sampling), ``label`` (any ASE calculator) and ``report`` (per-round and run summaries).
"""
