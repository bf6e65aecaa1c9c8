from eaglectl.cli.app import main

main()
