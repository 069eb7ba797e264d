import sys

from postbote.cli import main

sys.exit(main())
