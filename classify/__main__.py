"""featurecache, stage 2: `python -m classify --model lr|rf|mlp` (see classify.cli)."""
from classify.cli import main

main()
