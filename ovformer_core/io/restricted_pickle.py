"""Unpickling that can only build what the caller allows: nothing named in a file is imported or run.

A pickle is a small program: ``GLOBAL module name`` imports any callable and ``REDUCE`` calls it, which
is how a crafted file runs code. ``RestrictedUnpickler`` resolves every global through an allow-list
of ``(module, name) -> object`` chosen by the caller (the object handed back is the caller's, so an
allowed name can map to a safe stand-in), optionally through per-namespace factories (TorchScript's
``__torch__.*`` classes become inert holders), and refuses everything else. Persistent ids (how
PyTorch files point at tensor storages) go to a caller-given function or are refused.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable, Mapping
from typing import Any

#: (module, name) -> the object a GLOBAL of that name resolves to.
AllowedGlobals = Mapping[tuple[str, str], Any]
#: Module prefix -> factory(module, name) for globals in that namespace.
NamespaceFactories = Mapping[str, Callable[[str, str], Any]]


class RefusedGlobalError(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list (the usual sign of a file that runs code)."""

    def __init__(self, qualified_name: str) -> None:
        super().__init__(f"refusing global {qualified_name}")
        self.qualified_name = qualified_name


class _Sealed:
    """An allowed function as the pickle sees it: callable, but ``BUILD`` cannot change it.

    ``BUILD`` sets attributes on whatever object is on the stack; on a bare function that would let
    a file change ``__defaults__`` of our (or torch's) rebuilders for the rest of the process.
    """

    __slots__ = ("_target",)
    _target: Callable[..., Any]

    def __init__(self, target: Callable[..., Any]) -> None:
        object.__setattr__(self, "_target", target)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._target(*args, **kwargs)

    def __setattr__(self, name: str, value: object) -> None:
        raise pickle.UnpicklingError("refusing to modify an allowed global")

    def __setstate__(self, state: object) -> None:
        raise pickle.UnpicklingError("refusing to modify an allowed global")


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles only allow-listed globals; persistent ids go to ``persistent_load`` or are refused."""

    def __init__(
        self,
        file: io.BufferedIOBase | Any,
        allowed: AllowedGlobals,
        persistent_load: Callable[[Any], Any] | None = None,
        namespaces: NamespaceFactories | None = None,
    ) -> None:
        """Wrap a binary file.

        Args:
            file: the pickle stream.
            allowed: the only globals that resolve, mapped to what they resolve to.
            persistent_load: called with each persistent id; None refuses persistent ids.
            namespaces: module prefix (``"__torch__"``) -> factory for any global in that package.
        """
        super().__init__(file)
        self._allowed = allowed
        self._persistent = persistent_load
        self._namespaces = dict(namespaces or {})

    def find_class(self, module: str, name: str) -> Any:
        """Return an allow-listed object (functions sealed) or a namespace factory's object, or refuse."""
        found = self._allowed.get((module, name))
        if found is not None:
            return _Sealed(found) if callable(found) and not isinstance(found, type) else found
        for prefix, factory in self._namespaces.items():
            if module == prefix or module.startswith(prefix + "."):
                return factory(module, name)
        raise RefusedGlobalError(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        """Resolve a persistent id through the caller's function, or refuse."""
        if self._persistent is None:
            raise pickle.UnpicklingError("refusing persistent id (not a plain pickle)")
        return self._persistent(pid)
