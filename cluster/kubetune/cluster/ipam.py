"""Loopback pod IPs for the local cluster's node agent (one address per pod).

Linux routes all of 127.0.0.0/8 to the loopback interface, so every pod gets its own address
there (default 127.1.0.0/16, away from 127.0.0.1 where the control plane listens): two pods can
both listen on port 8080, and ``status.podIP`` is an address other processes can connect to.
Allocation is next-fit over the network so a released address is not reused at once.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

DEFAULT_POD_NETWORK = "127.1.0.0/16"


class PoolExhaustedError(RuntimeError):
    """Every address of the pod network is in use."""


@dataclass
class LoopbackPool:
    network: str = DEFAULT_POD_NETWORK
    _by_key: dict[str, str] = field(default_factory=dict)
    _next: int = 0

    def __post_init__(self) -> None:
        net = ipaddress.ip_network(self.network)
        if not isinstance(net, ipaddress.IPv4Network) or not net.subnet_of(
            ipaddress.IPv4Network("127.0.0.0/8")
        ):
            raise ValueError(f"pod network {self.network} must be an IPv4 range inside 127.0.0.0/8")
        self._net = net

    def _usable(self, address: ipaddress.IPv4Address) -> bool:
        last = int(address) & 0xFF
        return 0 < last < 255 and str(address) != "127.0.0.1"

    def allocate(self, key: str) -> str:
        """The address of ``key`` (a pod UID), allocating one on first use."""
        if key in self._by_key:
            return self._by_key[key]
        used = set(self._by_key.values())
        size = self._net.num_addresses
        for step in range(size):
            offset = (self._next + step) % size
            address = self._net.network_address + offset
            if self._usable(address) and str(address) not in used:
                self._next = offset + 1
                self._by_key[key] = str(address)
                return str(address)
        raise PoolExhaustedError(f"no free address left in {self.network}")

    def reserve(self, key: str, address: str) -> bool:
        """Keep an address a pod already had (agent restart); False if taken or foreign."""
        if ipaddress.ip_address(address) not in self._net:
            return False
        if address in self._by_key.values() and self._by_key.get(key) != address:
            return False
        self._by_key[key] = address
        return True

    def release(self, key: str) -> None:
        self._by_key.pop(key, None)

    def in_use(self) -> dict[str, str]:
        return dict(self._by_key)
