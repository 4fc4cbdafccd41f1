from bertclf.cli.main import main

raise SystemExit(main())
