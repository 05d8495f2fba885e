"""`python -m longrl.cli ...` (the form `torchrun` launches) = `longrl ...`."""

import sys

from longrl.cli import main

sys.exit(main())
