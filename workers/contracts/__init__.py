"""What crosses a process boundary, each written and read by one pure codec.

The controller writes, the proxies and Prometheus read (service-discovery targets,
their generation, endpoint modes): a field written here is read back here, never by a
format string on one side and a `split` on the other. No I/O.
"""
