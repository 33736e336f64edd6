from hambench.app.cli import main

main()
