import sys

from lspipe.cli import main

sys.exit(main())
