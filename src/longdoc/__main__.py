from longdoc.cli import main

main()
