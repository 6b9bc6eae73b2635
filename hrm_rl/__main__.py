import sys

from hrm_rl.cli import main

sys.exit(main())
