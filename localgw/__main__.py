from localgw.cli import main

main()
