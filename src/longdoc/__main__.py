from longdoc.cli.app import main

main()
