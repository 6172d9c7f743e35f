from axsync.cli import main

main()
