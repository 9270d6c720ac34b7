"""``python -m robench`` (and ``torchrun -m robench``): the command line."""

import sys

from robench.cli import main

sys.exit(main())
