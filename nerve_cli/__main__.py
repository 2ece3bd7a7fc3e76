from nerve_cli.main import main

raise SystemExit(main())
