"""sbi-allinone: Simformer, inflationary flows and invertible networks for sbi."""

from sbi_allinone.inflationary import InflationaryFlow, inflationary_flow_nn
from sbi_allinone.inn import INN, inn_nn
from sbi_allinone.simformer import Simformer

__version__ = "0.1.0.dev0"

__all__ = [
    "INN",
    "InflationaryFlow",
    "Simformer",
    "__version__",
    "inflationary_flow_nn",
    "inn_nn",
]
