"""The governor's pure core: jobs, dependencies, routing and the requests, as a state machine.

Nothing here opens a socket, reads a clock, spawns a process or touches the file
system: events come in (``GovernorCore.handle``), actions go out, and the host facts a
submit check needs come through an injected interface.  The service (``..service``)
is the I/O shell around it.
"""
