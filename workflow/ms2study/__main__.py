import sys

from ms2study.cli import main

sys.exit(main())
