"""Port mapping on the home router (PCP, NAT-PMP, UPnP IGD) for WireGuard's UDP port.

``natpmp`` and ``pcp`` are sans-IO codecs, ``machine`` decides when to probe, map, renew and
delete (no I/O, an injected clock), ``client`` performs the I/O on asyncio.
"""
