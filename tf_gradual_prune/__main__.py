import sys

from tf_gradual_prune.cli import main

sys.exit(main())
