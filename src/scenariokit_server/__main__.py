from scenariokit_server.cli import main

raise SystemExit(main())
