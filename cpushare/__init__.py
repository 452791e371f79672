"""The CPUShare guest and the wire contract: orders, job limits, protocol, jail, seller.

Standard library of Python 3.11 only: it is shipped whole into the live CD and the Debian
package, and imported on the host by the market, the builder and the tests.
"""
