from eaglectl.cli.entry import main

main()
