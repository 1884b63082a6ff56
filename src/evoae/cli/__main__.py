import sys

from evoae.cli import main

sys.exit(main())
