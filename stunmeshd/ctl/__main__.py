from stunmeshd.ctl.cli import main

raise SystemExit(main())
