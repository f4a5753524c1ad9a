from scenariokit.cli import main

raise SystemExit(main())
