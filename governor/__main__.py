from hpilot.governor.cli import main

main()
