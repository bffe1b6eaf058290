"""Makes `import colorjax` work from the folder that holds a clone of this repository.

Run from there, Python finds the clone's folder (named like the package, but with no
__init__.py of its own before this file) and imports it as an empty namespace package, which
fails later with "module 'colorjax' has no attribute 'colorize'". With this file the folder is a
regular package that stands in for the real one, colorjax/ inside it: same modules, same API.
"""

from pathlib import Path as _Path

__path__ = [str(_Path(__file__).resolve().parent / "colorjax")]
_init = _Path(__path__[0]) / "__init__.py"
exec(compile(_init.read_text(encoding="utf-8"), str(_init), "exec"))  # noqa: S102
