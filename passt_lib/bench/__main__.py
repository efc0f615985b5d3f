import sys

from passt_lib.bench import main

sys.exit(main())
