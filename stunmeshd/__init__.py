"""stunmeshd: peer-to-peer WireGuard through NAT, with STUN and existing key-value stores."""

__version__ = "0.1.0"
