"""Optimizers behind one ask/tell protocol, built by name from the method registry.

>>> from hubtune.optim import get_method
>>> get_method("asha").name
'asha'
"""

from hubtune.optim.registry import MethodSpec, get_method, list_methods, register_method

__all__ = ["MethodSpec", "get_method", "list_methods", "register_method"]
