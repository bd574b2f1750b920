"""``python -m govtrust`` runs the CLI."""

from govtrust.cli import main

raise SystemExit(main())
