"""The verbs: one keyword-only function per verb, handed its typed values by cli.py. Verb modules import transport,
ui and this package's shared modules (shared.py, spec.py), never each other."""
