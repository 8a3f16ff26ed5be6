import sys

from lit_codellama.cli import main

sys.exit(main())
