"""Simformer (Gloeckler et al., ICML 2024): one score model for every conditional.

Work in progress (issue 3): the SDEs, condition-mask sampler, attention masks and the
network are here; the trainer and posteriors are not yet, so nothing is exported from
``sbi_allinone`` itself.
"""
