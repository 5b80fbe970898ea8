"""The package layout's promises that no other test states."""

import pickle

from longdoc.registry.pyfunc import LongdocModel


def test_a_model_pickled_before_the_registry_package_still_loads():
    """MLflow pickled ``python_model`` by reference as ``longdoc.pyfunc.LongdocModel`` before the move;
    this is that pickle's opcode stream (GLOBAL, empty args, NEWOBJ, an empty state dict, BUILD)."""
    old = b"clongdoc.pyfunc\nLongdocModel\n)\x81}b."
    assert type(pickle.loads(old)) is LongdocModel
