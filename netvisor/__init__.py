"""netvisor: run unmodified Linux programs on a userspace TCP/IP stack.

Layers (dependencies point one way, see docs/ARCHITECTURE.md):
``tcpip.wire`` <- ``tcpip`` (sans-IO stack) <- ``netstack`` (the trio driver)
<- ``syscall`` (the sandbox's syscall plane) <- ``cli``; ``link`` (frames in and
out) is used only by the driver.
"""

__version__ = "0.1.0"
