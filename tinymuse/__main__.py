"""``python -m tinymuse``: the same as the ``tinymuse`` command."""
import sys

from .cli import main

sys.exit(main())
