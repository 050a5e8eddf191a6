"""sbi-allinone: Simformer, inflationary flows and invertible networks for sbi."""

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
