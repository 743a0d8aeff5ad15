"""``python -m fedledger.cli``: how a launcher starts ``fedledger node``."""

from fedledger.cli import main

main()
