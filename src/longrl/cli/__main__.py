"""`python -m longrl.cli ...` (the form `torchrun` launches) = `longrl ...`.

Python puts the working directory first on the import path under `-m`; it is taken off again
here, before any command imports its stage (the command modules import stages lazily), so a file
next to the user's data never shadows a module longrl imports. `PYTHONSAFEPATH=1` (Python 3.11+)
keeps it off from the start, the package's own first imports included.
"""

import os
import sys


def drop_working_directory_from_path() -> None:
    """Undo what `python -m` does to the import path: its first entry, the working directory."""
    if sys.path and not sys.flags.safe_path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]


drop_working_directory_from_path()

from longrl.cli import main  # noqa: E402  (after the import path is cleaned)

sys.exit(main())
