from kubetune.cli.main import main

main()
