"""The ``hpilot`` command line: ``main`` builds the click group (run, service, resume),
``client`` the commands that talk to a running service, ``report`` those that read a
run dir."""
