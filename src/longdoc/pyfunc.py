"""The name :class:`~longdoc.registry.pyfunc.LongdocModel` was pickled under before the registry package.

MLflow stores a pyfunc's ``python_model`` with cloudpickle, which records the class by its import
path, so every model version registered before the move (and every Bento built from one) unpickles
``longdoc.pyfunc.LongdocModel``. This alias keeps those loading; new versions record the new path.
"""

from longdoc.registry.pyfunc import LongdocModel

__all__ = ["LongdocModel"]
