"""The verbs: one keyword-only function per verb, handed typed values by cli.py."""
