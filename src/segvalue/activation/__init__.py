"""Activation: campaign plans per segment, control groups, frequency caps, suppression,
next-best offers, audiences, match keys, exports and signed webhooks (docs/activation.md).

Pure functions over arrays and tables; files and databases are opened by the data layer
(:mod:`segvalue.data`) and the results store.
"""
