from sidkit.cli import main

main()
