"""orch: run heavy jobs on EC2 hosts in tmux from a light laptop."""

__version__ = "0.1.0"
