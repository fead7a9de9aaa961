"""``python -m ijseg`` is the same as the ``ijseg`` command."""

from .cli import console

if __name__ == "__main__":
    console()
