from hpilot.governor.cli.main import main

main()
