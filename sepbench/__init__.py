"""sepbench: how much cheaper separable, grouped and depthwise convolutions are in theory, and how
much faster and leaner they are in practice, on this machine and this PyTorch."""

__version__ = "0.1.0"
