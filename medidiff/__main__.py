import sys

from medidiff.cli.main import main

sys.exit(main())
