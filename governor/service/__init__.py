"""The governor's I/O shell: the service loop, its sockets, partitions, journal and files.

It turns sockets, child exits, signals and timers into the core's events and carries
out the core's actions; ``startup`` builds a service (or a partition manager) from the
options.
"""
